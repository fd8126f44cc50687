-- Dead letters keep the rest of the record, so `kl dead-letters replay` rebuilds it exactly:
--   kafka_timestamp        the record's own timestamp (milliseconds since the epoch), not when it
--                          was dead-lettered
--   key_encoding           how record_key is stored: 'utf8' (the key was UTF-8 text without NUL)
--                          or 'base64' (anything else, as delivered); null without a key
--   key_schema_metadata,   the ESM's keySchemaMetadata / valueSchemaMetadata
--   value_schema_metadata  ({"dataFormat": "AVRO", "schemaId": "12"}), set when an ESM schema
--                          registry with EventRecordFormat SOURCE delivered the record: the body
--                          is then the producer's bytes without the wire prefix, and without the
--                          schema id it cannot be decoded again
-- Apply before deploying functions that write them: until then their dead-letter writes fail and
-- the records are redelivered, never lost. Rows written before stay readable (the columns are
-- null; kl then falls back to created_at and the stored key text).

alter table public.dead_letters
    add column if not exists kafka_timestamp bigint,
    add column if not exists key_encoding text,
    add column if not exists key_schema_metadata jsonb,
    add column if not exists value_schema_metadata jsonb;

alter table public.dead_letters drop constraint if exists dead_letters_key_encoding_check;
alter table public.dead_letters add constraint dead_letters_key_encoding_check
    check (key_encoding in ('utf8', 'base64'));

comment on column public.dead_letters.kafka_timestamp is
    'The Kafka record timestamp, milliseconds since the epoch.';
comment on column public.dead_letters.key_encoding is
    'How record_key is stored: utf8 or base64 (the bytes as delivered).';
comment on column public.dead_letters.key_schema_metadata is
    'The ESM keySchemaMetadata ({"dataFormat", "schemaId"}) when a schema registry set it.';
comment on column public.dead_letters.value_schema_metadata is
    'The ESM valueSchemaMetadata ({"dataFormat", "schemaId"}) when a schema registry set it.';
