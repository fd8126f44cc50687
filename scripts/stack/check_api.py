#!/usr/bin/env python3
"""Contract checks for the local stack: asserts what supabase/README.md promises the Rust
clients about postrust in compat mode and the schema. Run with `scripts/local-stack check`
(needs the variables of `scripts/local-stack env`). Writes only rows whose keys start with a
per-run prefix and deletes them again. Stdlib only.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ["SUPABASE_REST_URL"]
SERVICE = os.environ["SUPABASE_SERVICE_ROLE_KEY"]
ANON = os.environ["SUPABASE_ANON_KEY"]
RUN = f"check-{os.getpid()}-{int(time.time())}-"

results = []


def call(method, path, body=None, prefer=None, key=SERVICE, headers=None):
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["apikey"] = key
        h["Authorization"] = "Bearer " + key
    if prefer:
        h["Prefer"] = prefer
    h.update(headers or {})
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, method=method, headers=h, data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return status, parsed


def check(name, cond, detail=""):
    results.append(cond)
    print(("ok    " if cond else "FAIL  ") + name + ("" if cond else f"  ({detail})"))


def expect_error(name, got, status, code):
    st, body = got
    ok = st == status and isinstance(body, dict) and body.get("code") == code
    ok = ok and all(k in body for k in ("code", "details", "hint", "message"))
    check(f"{name} -> {status} {code}", ok, f"got {st} {body}")


def q(value):
    return urllib.parse.quote(value, safe="")


def in_list(values):
    quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "in.(" + ",".join(quoted) + ")"


def gift(event_id, **over):
    row = {"event_id": RUN + event_id, "page_id": 1, "question": "q", "answer": "a",
           "ts": "2026-01-01T00:00:00Z", "kafka_topic": "gifts", "kafka_partition": 0,
           "kafka_offset": 1, "raw": {"event_id": event_id}}
    row.update(over)
    return row


def vector_row(page, chunk, dims=768):
    return {"page_id": RUN + page, "chunk_index": chunk, "embedding": [0.25] * dims,
            "content_hash": "h", "model": "m", "chunk_text": None}


def main():
    # Writes.
    st, _ = call("POST", "/vault", [gift("a"), gift("b")], prefer="return=minimal")
    check("bulk insert with return=minimal -> 201", st == 201, st)
    expect_error("duplicate without on_conflict", call("POST", "/vault", [gift("a")]), 409, "23505")
    st, body = call("POST", "/vault?on_conflict=event_id", [gift("a", question="new"), gift("c")],
                    prefer="resolution=merge-duplicates,return=representation")
    check("merge-duplicates updates and inserts", st in (200, 201) and
          sorted((r["event_id"][len(RUN):], r["question"]) for r in body) == [("a", "new"), ("c", "q")],
          f"{st} {body}")
    st, body = call("POST", "/vault?on_conflict=event_id", [gift("a", question="ignored"), gift("d")],
                    prefer="resolution=ignore-duplicates,return=representation")
    check("ignore-duplicates returns only new rows", st in (200, 201) and
          [r["event_id"][len(RUN):] for r in body] == ["d"], f"{st} {body}")
    st, body = call("GET", f"/vault?select=question&event_id=eq.{q(RUN + 'a')}")
    check("ignore-duplicates kept the existing row", body == [{"question": "new"}], body)
    expect_error("same key twice in one merge batch",
                 call("POST", "/vault?on_conflict=event_id", [gift("e"), gift("e")],
                      prefer="resolution=merge-duplicates"), 500, "21000")
    expect_error("objects with different keys",
                 call("POST", "/vault", [gift("f"), {"event_id": RUN + "g"}]), 400, "PGRST102")
    big = 2**63 - 1
    st, body = call("POST", "/vault", [gift("big", page_id=big, raw={"n": big})],
                    prefer="return=representation")
    check("bigint and jsonb integers round-trip exactly",
          st == 201 and body[0]["page_id"] == big and body[0]["raw"]["n"] == big, f"{st} {body}")

    # Errors.
    expect_error("NOT NULL violation", call("POST", "/vault", [gift("n", question=None)]), 400, "23502")
    expect_error("string into bigint", call("POST", "/vault", [gift("t", page_id="abc")]), 400, "22P02")
    expect_error("NUL in text", call("POST", "/vault", [gift("z", question="a\u0000b")]), 400, "22P05")
    expect_error("unknown column", call("POST", "/vault", [dict(gift("u"), nope=1)]), 400, "PGRST204")
    expect_error("missing table", call("POST", "/no_such_table", [{"a": 1}]), 404, "PGRST205")
    expect_error("bad JWT", call("GET", "/vault", key=SERVICE + "x"), 401, "PGRST301")
    expect_error("no JWT", call("GET", "/vault", key=None), 401, "42501")
    expect_error("anon JWT", call("GET", "/vault", key=ANON), 401, "42501")
    expect_error("anon insert into dead_letters",
                 call("POST", "/dead_letters", [{"function_name": "f", "error_code": "x"}], key=ANON),
                 401, "42501")
    expect_error("other schema via Content-Profile",
                 call("POST", "/vault", [gift("p")], headers={"Content-Profile": "extensions"}),
                 406, "PGRST106")

    # Dead letters are stored once, nulls included.
    dl = {"function_name": RUN + "fn", "topic": None, "kafka_partition": None, "kafka_offset": None,
          "record_key": None, "raw_value": "AAE=", "value_encoding": "base64",
          "error_code": "invalid_json", "error_message": "x"}
    path = "/dead_letters?on_conflict=function_name,topic,kafka_partition,kafka_offset"
    codes = [call("POST", path, [dl], prefer="resolution=ignore-duplicates,return=minimal")[0]
             for _ in range(2)]
    st, body = call("GET", f"/dead_letters?select=id&function_name=eq.{q(RUN + 'fn')}")
    check("redelivered dead letter stored once", codes == [201, 201] and len(body) == 1, f"{codes} {body}")
    expect_error("value_encoding check", call("POST", "/dead_letters", [dict(dl, value_encoding="hex")]),
                 400, "23514")

    # Vectors: array and string forms, dimension check, in.() quoting, filtered delete.
    odd = ["x,y", 'q"uote', "pa(ren)", "b\\s", "sp ace"]
    rows = [vector_row(p, c) for p in odd for c in range(5)]
    rows[0]["embedding"] = "[" + ",".join(["0.5"] * 768) + "]"
    st, _ = call("POST", "/page_vectors", rows, prefer="return=minimal")
    check("vectors as JSON arrays and as strings -> 201", st == 201, st)
    st, body = call("GET", f"/page_vectors?select=embedding&page_id=eq.{q(RUN + odd[0])}&chunk_index=eq.0")
    check("vector read back as string", st == 200 and body[0]["embedding"].startswith("[0.5,"), body)
    expect_error("vector of wrong length",
                 call("POST", "/page_vectors", [vector_row("short", 0, dims=3)]), 400, "22000")
    for page in odd:
        st, body = call("GET", f"/page_vectors?select=chunk_index&page_id={q(in_list([RUN + page]))}")
        check(f"in.() with quoted {page!r}", st == 200 and len(body) == 5, f"{st} {body}")
    st, body = call("DELETE", f"/page_vectors?page_id={q(in_list([RUN + p for p in odd[:3]]))}&chunk_index=gte.3",
                    prefer="return=representation")
    check("filtered bulk delete removes exactly those rows", st == 200 and
          sorted((r["page_id"][len(RUN):], r["chunk_index"]) for r in body)
          == sorted((p, c) for p in odd[:3] for c in (3, 4)), f"{st} {body}")

    # Direct SQL access for tests.
    pg_bin, db_url = os.environ.get("KL_PG_BIN"), os.environ.get("DATABASE_URL")
    if pg_bin and db_url:
        out = subprocess.run([os.path.join(pg_bin, "psql"), db_url, "-XAtc",
                              f"select count(*) from page_vectors where page_id like '{RUN}%'"],
                             capture_output=True, text=True)
        check("psql via DATABASE_URL", out.returncode == 0 and out.stdout.strip() == str(len(odd) * 5 - 6),
              out.stderr.strip() or out.stdout.strip())

    # Clean up this run's rows.
    call("DELETE", f"/vault?event_id=like.{q(RUN + '*')}")
    call("DELETE", f"/page_vectors?page_id=like.{q(RUN + '*')}")
    call("DELETE", f"/dead_letters?function_name=like.{q(RUN + '*')}")
    st, body = call("GET", f"/vault?select=event_id&event_id=like.{q(RUN + '*')}")
    check("cleanup with like filter", body == [], body)

    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
