#!/usr/bin/env python3
"""Small stdlib-only helpers for scripts/local-stack.

  helper.py jwt SECRET ROLE            print an HS256 JWT with claim `role: ROLE`
  helper.py wait-http URL SECONDS      wait until URL answers any HTTP status
  helper.py random-secret              print a random 48-character secret

Kept in Python so that a fresh machine needs no curl, openssl or jq.
"""

import base64
import hashlib
import hmac
import json
import secrets
import sys
import time
import urllib.error
import urllib.request


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwt(secret: str, role: str) -> str:
    now = int(time.time())
    header = {"alg": "HS256", "typ": "JWT"}
    # Ten years, like the keys Supabase hands out for a project.
    claims = {"iss": "kafka-lambdas-local", "role": role, "iat": now, "exp": now + 10 * 365 * 86400}
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    sig = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64url(sig)


def wait_http(url: str, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                resp.read(1)
            return 0
        except urllib.error.HTTPError:
            # Any HTTP status means the server is up and answering.
            return 0
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    print(f"no answer from {url} within {seconds:.0f}s (last error: {last})", file=sys.stderr)
    return 1


def main(argv: list) -> int:
    if len(argv) >= 1 and argv[0] == "jwt" and len(argv) == 3:
        print(jwt(argv[1], argv[2]))
        return 0
    if len(argv) >= 1 and argv[0] == "wait-http" and len(argv) == 3:
        return wait_http(argv[1], float(argv[2]))
    if argv == ["random-secret"]:
        print(secrets.token_urlsafe(36))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
