#!/usr/bin/env python3
"""Bulk-write timings against the local stack (the figures in supabase/README.md).
Run with `scripts/local-stack bench`. Writes rows under a per-run prefix and deletes them.
Stdlib only; one request at a time, `Prefer: return=minimal`.
"""

import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ["SUPABASE_REST_URL"]
KEY = os.environ["SUPABASE_SERVICE_ROLE_KEY"]
RUN = f"bench-{os.getpid()}-{int(time.time())}-"


def send(method, path, rows=None, prefer="return=minimal"):
    body = None if rows is None else json.dumps(rows).encode()
    headers = {"apikey": KEY, "Authorization": "Bearer " + KEY,
               "Content-Type": "application/json", "Prefer": prefer}
    req = urllib.request.Request(BASE + path, method=method, headers=headers, data=body)
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            status = resp.status
            resp.read()
    except urllib.error.HTTPError as err:
        status = err.code
        err.read()
    return status, time.perf_counter() - start, len(body or b"")


def report(label, status, seconds, size, rows):
    print(f"{label:<44} HTTP {status}  {seconds * 1000:8.0f} ms  {size / 1e6:5.1f} MB  "
          f"{rows / seconds:9.0f} rows/s")
    return status < 300


def main():
    ok = True
    rows = [{"event_id": f"{RUN}{i}", "page_id": i, "question": "q" * 40, "answer": "a" * 80,
             "ts": "2026-01-01T00:00:00Z", "kafka_topic": "gifts", "kafka_partition": i % 6,
             "kafka_offset": i, "raw": {"event_id": f"{RUN}{i}", "n": i}} for i in range(10_000)]
    ok &= report("vault: insert 10,000 rows", *send("POST", "/vault", rows), len(rows))
    ok &= report("vault: upsert 10,000 existing (merge)",
                 *send("POST", "/vault?on_conflict=event_id", rows,
                       "resolution=merge-duplicates,return=minimal"), len(rows))
    ok &= report("vault: upsert 10,000 existing (ignore)",
                 *send("POST", "/vault?on_conflict=event_id", rows,
                       "resolution=ignore-duplicates,return=minimal"), len(rows))
    rng = random.Random(7)
    for count in (100, 500):
        vecs = [{"page_id": f"{RUN}{count}-{i // 10}", "chunk_index": i % 10,
                 "embedding": [round(rng.uniform(-1, 1), 6) for _ in range(768)],
                 "content_hash": "h", "model": "m", "chunk_text": "x" * 500} for i in range(count)]
        ok &= report(f"page_vectors: insert {count} rows x 768", *send("POST", "/page_vectors", vecs), count)
    pattern = urllib.parse.quote(RUN + "*", safe="")
    send("DELETE", f"/vault?event_id=like.{pattern}")
    send("DELETE", f"/page_vectors?page_id=like.{pattern}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
