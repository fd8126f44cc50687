-- Gifts persisted by the gift-persister function, one row per Kafka event.
-- Writes come only from the service role (upsert on event_id); no anonymous access.

create table public.vault (
    event_id text primary key,
    page_id bigint not null,
    question text not null,
    answer text not null,
    ts timestamptz not null,
    -- Provenance: where in Kafka the row came from.
    kafka_topic text,
    kafka_partition int,
    kafka_offset bigint,
    -- The decoded event as received, for audits and replays.
    raw jsonb not null,
    created_at timestamptz not null default now()
);

comment on table public.vault is 'Gifts (question/answer per page) written by the gift-persister Lambda.';

create index vault_page_id_idx on public.vault (page_id);

alter table public.vault enable row level security;

-- Supabase grants every API role everything on new tables by default; keep only the service role.
revoke all on table public.vault from anon, authenticated;
grant select, insert, update, delete on table public.vault to service_role;
