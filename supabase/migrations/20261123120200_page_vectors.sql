-- Page embeddings written by the page-embedder function: one row per (page, chunk).
-- content_hash lets the embedder skip chunks whose text and model did not change; chunk_text
-- keeps the embedded text so a similarity search can return it without another lookup.

create extension if not exists vector with schema extensions;

create table public.page_vectors (
    page_id text not null,
    chunk_index int not null check (chunk_index >= 0),
    embedding extensions.vector(768) not null,
    content_hash text not null,
    model text not null,
    chunk_text text,
    updated_at timestamptz not null default now(),
    primary key (page_id, chunk_index)
);

comment on table public.page_vectors is 'Chunk embeddings (768 dimensions) per page, written by the page-embedder Lambda.';

create index page_vectors_embedding_hnsw_idx on public.page_vectors
    using hnsw (embedding extensions.vector_cosine_ops);

-- An upsert that merges a changed chunk must move updated_at too; PostgREST only sets the
-- columns present in the payload.
create function public.page_vectors_touch_updated_at() returns trigger
    language plpgsql
    set search_path = ''
as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

revoke all on function public.page_vectors_touch_updated_at() from public, anon, authenticated;

create trigger page_vectors_touch_updated_at
    before update on public.page_vectors
    for each row execute function public.page_vectors_touch_updated_at();

alter table public.page_vectors enable row level security;

revoke all on table public.page_vectors from anon, authenticated;
grant select, insert, update, delete on table public.page_vectors to service_role;
