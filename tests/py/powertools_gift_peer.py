"""The peer gift-persister is measured against (scripts/bench-write, issue 24): the same job written
in Python the way Powertools for AWS Lambda recommends, run by the AWS Lambda Runtime Interface
Client (`python -m awslambdaric powertools_gift_peer.lambda_handler`) under the same Runtime API.

- `BatchProcessor(event_type=EventType.Kafka)` over the Kafka event: one record handler per record
  (`KafkaEventRecord.json_value` decodes the value), a failed record reported in the partial
  batch response (`batchItemFailures`), the response built by the processor;
- per-record validation with the rules of gift-persister's `gift.rs` (page_id an integer >= 0,
  question and answer non-blank strings of at most 10,000 characters, ts epoch seconds or an
  ISO 8601 date-time or absent (the Kafka timestamp), event_id given or SHA-256 of the fields);
- the valid gifts upserted in bulk through PostgREST into `vault` (`on_conflict=event_id`,
  `resolution=ignore-duplicates`, `return=minimal`), 500 rows a request, one `requests.Session`
  built at start-up. A refused request fails the invocation (the ESM redelivers the batch).

Environment: SUPABASE_REST_URL, SUPABASE_SERVICE_ROLE_KEY, GIFTS_TABLE (default vault).
"""

import hashlib
import json
import os
from datetime import datetime, timezone

import requests
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEventRecord

CHUNK_ROWS = 500
MAX_TEXT_CHARS = 10_000
MAX_EVENT_ID_CHARS = 200

processor = BatchProcessor(event_type=EventType.Kafka)
_key = os.environ["SUPABASE_SERVICE_ROLE_KEY"]
_url = f"{os.environ['SUPABASE_REST_URL'].rstrip('/')}/{os.environ.get('GIFTS_TABLE', 'vault')}"
session = requests.Session()
session.headers.update(
    {
        "apikey": _key,
        "Authorization": f"Bearer {_key}",
        "Content-Type": "application/json",
        "Prefer": "return=minimal,resolution=ignore-duplicates",
    }
)


class InvalidGift(ValueError):
    """The record itself is bad."""


def _text(gift, field, max_chars):
    value = gift.get(field)
    if value is None:
        raise InvalidGift(f"{field}: is required")
    if not isinstance(value, str):
        raise InvalidGift(f"{field}: must be a string")
    if not value.strip():
        raise InvalidGift(f"{field}: must not be empty")
    if len(value) > max_chars:
        raise InvalidGift(f"{field}: {len(value)} characters, at most {max_chars} allowed")
    return value


def _ts_micros(gift, record_ts_ms):
    ts = gift.get("ts")
    if ts is None:
        return record_ts_ms * 1000
    if isinstance(ts, bool):
        raise InvalidGift("ts: must be a number of seconds or an ISO 8601 string")
    if isinstance(ts, int):
        return ts * 1_000_000
    if isinstance(ts, float):
        return round(ts * 1e6)
    if isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts.strip())
        except ValueError as e:
            raise InvalidGift(f"ts: {e}") from e
        if dt.tzinfo is None:
            raise InvalidGift("ts: the date-time has no offset")
        return round(dt.timestamp() * 1e6)
    raise InvalidGift("ts: must be a number of seconds or an ISO 8601 string")


def to_row(record: KafkaEventRecord):
    gift = record.json_value
    if not isinstance(gift, dict):
        raise InvalidGift("value must be a JSON object")
    page_id = gift.get("page_id")
    if not isinstance(page_id, int) or isinstance(page_id, bool):
        raise InvalidGift("page_id: must be an integer")
    if not 0 <= page_id < 2**63:
        raise InvalidGift(f"page_id: must be an integer >= 0 and < 2^63, got {page_id}")
    question = _text(gift, "question", MAX_TEXT_CHARS)
    answer = _text(gift, "answer", MAX_TEXT_CHARS)
    micros = _ts_micros(gift, record.timestamp)
    try:
        ts = datetime.fromtimestamp(micros / 1e6, tz=timezone.utc)
    except (OverflowError, OSError, ValueError) as e:
        raise InvalidGift(f"ts: out of range ({e})") from e
    if gift.get("event_id") is not None:
        event_id = _text(gift, "event_id", MAX_EVENT_ID_CHARS)
    else:
        canonical = json.dumps([page_id, question, answer, micros], separators=(",", ":"), ensure_ascii=False)
        event_id = hashlib.sha256(b"gift:v1:" + canonical.encode()).hexdigest()
    return {
        "event_id": event_id,
        "page_id": page_id,
        "question": question,
        "answer": answer,
        "ts": ts.isoformat(),
        "kafka_topic": record.topic,
        "kafka_partition": record.partition,
        "kafka_offset": record.offset,
        "raw": gift,
    }


def lambda_handler(event, context):
    rows = {}

    def record_handler(record: KafkaEventRecord):
        row = to_row(record)
        # The first of a batch's duplicates is written (PostgreSQL touches a row once per upsert).
        rows.setdefault(row["event_id"], row)

    records = [r for partition in event.get("records", {}).values() for r in partition]
    with processor(records, record_handler, lambda_context=context):
        processor.process()
    batch = list(rows.values())
    for start in range(0, len(batch), CHUNK_ROWS):
        resp = session.post(
            _url,
            params={"on_conflict": "event_id"},
            data=json.dumps(batch[start : start + CHUNK_ROWS]),
            timeout=10,
        )
        resp.raise_for_status()
    return processor.response()
