"""Calls PostgREST functions with the `postgrest` client library (what supabase-py's `.rpc()` is)
and prints what each call returned, for the Rust test that drives it (tests/tests/stack/query.rs).

stdin: a JSON list of calls, {"function": name, "params": {...}, "role": "service" | "anon"}.
stdout: a JSON list, one entry per call: {"data": [...]} or {"error": {"code": ..., "message": ...}}.
Environment: SUPABASE_REST_URL, SUPABASE_SERVICE_ROLE_KEY, SUPABASE_ANON_KEY (the local stack's).
"""

import json
import os
import sys

from postgrest import APIError, SyncPostgrestClient


def client(key):
    return SyncPostgrestClient(
        os.environ["SUPABASE_REST_URL"],
        headers={"apikey": key, "Authorization": f"Bearer {key}"},
    )


def main():
    keys = {
        "service": os.environ["SUPABASE_SERVICE_ROLE_KEY"],
        "anon": os.environ["SUPABASE_ANON_KEY"],
    }
    clients = {}
    out = []
    for call in json.load(sys.stdin):
        role = call.get("role", "service")
        if role not in clients:
            clients[role] = client(keys[role])
        try:
            response = clients[role].rpc(call["function"], call["params"]).execute()
            out.append({"data": response.data})
        except APIError as e:
            # Code and message only: never the request (it carries the key).
            out.append({"error": {"code": e.code, "message": e.message}})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
