-- Records a function could not process (bad input, permanent errors), kept for inspection and
-- replay instead of being dropped. A redelivered bad record is stored once: writers upsert with
-- on_conflict=function_name,topic,kafka_partition,kafka_offset and resolution=ignore-duplicates.

create table public.dead_letters (
    id bigint generated always as identity primary key,
    function_name text not null,
    topic text,
    kafka_partition int,
    kafka_offset bigint,
    record_key text,
    -- The record value: UTF-8 text as is, anything else base64 (see value_encoding).
    raw_value text,
    value_encoding text check (value_encoding in ('utf8', 'base64')),
    error_code text not null,
    error_message text,
    created_at timestamptz not null default now(),
    -- NULLS NOT DISTINCT: a record without a partition/offset still deduplicates.
    constraint dead_letters_record_key unique nulls not distinct
        (function_name, topic, kafka_partition, kafka_offset)
);

comment on table public.dead_letters is 'Kafka records the Lambdas gave up on, with the reason.';

create index dead_letters_created_at_idx on public.dead_letters (created_at);

alter table public.dead_letters enable row level security;

revoke all on table public.dead_letters from anon, authenticated;
revoke all on sequence public.dead_letters_id_seq from anon, authenticated;
grant select, insert, update, delete on table public.dead_letters to service_role;
grant usage, select on sequence public.dead_letters_id_seq to service_role;
