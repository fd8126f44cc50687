-- What page-embedder last applied to each page, whatever the vector store: the source version of
-- the change (Debezium's position, see event_decoding::SourceVersion's text form) and whether it
-- was a delete. An older change re-delivered after a newer one (a re-driven batch, a manual
-- replay) is ignored, and a delete leaves its row here so that an older create cannot bring the
-- page back. Pages fed by plain rows have no version: last write wins. `notified_hash` is the
-- page's content hash the RAG service last accepted: a page whose refresh failed is notified
-- again the next time the function sees it.

create table public.page_state (
    page_id text primary key,
    -- `lsn:<20 digits>`, `binlog:<file>:<pos>:<row>`, `ts:<20 digits>` or
    -- `offset:<partition>:<offset>`: text that sorts in version order within one kind.
    version text,
    deleted boolean not null default false,
    notified_hash text,
    updated_at timestamptz not null default now()
);

comment on table public.page_state is
    'page-embedder: the source version last applied per page (tombstones included).';

alter table public.page_state enable row level security;

revoke all on table public.page_state from anon, authenticated;
grant select, insert, update, delete on table public.page_state to service_role;
