-- Dead letters keep the record's headers too, so a replay that depends on them (trace context,
-- content type, a producer's idempotency key) rebuilds the record as it was delivered.
-- `[{"name": "...", "value": "<UTF-8 text>"}]`, or `"value_base64"` for a value that is not
-- UTF-8 text; null when the record had no headers. Apply before deploying functions that write
-- it: until then their dead-letter writes fail and the records are redelivered, never lost.

alter table public.dead_letters add column if not exists record_headers jsonb;

comment on column public.dead_letters.record_headers is
    'The Kafka record headers: [{"name", "value"}] (UTF-8) or [{"name", "value_base64"}].';
