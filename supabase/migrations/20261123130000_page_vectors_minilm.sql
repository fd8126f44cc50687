-- Chunk embeddings of the in-process embedder (EMBED_PROVIDER=local, all-MiniLM-L6-v2): the
-- same shape as page_vectors but vector(384). A pgvector column has one dimension, so each model
-- size gets its own table; page-embedder writes here by default when EMBED_PROVIDER=local
-- (VECTORS_TABLE overrides it). Local runs and the demo (scripts/demo) use this table.

create extension if not exists vector with schema extensions;

create table public.page_vectors_minilm (
    page_id text not null,
    chunk_index int not null check (chunk_index >= 0),
    embedding extensions.vector(384) not null,
    content_hash text not null,
    model text not null,
    chunk_text text,
    updated_at timestamptz not null default now(),
    primary key (page_id, chunk_index)
);

comment on table public.page_vectors_minilm is 'Chunk embeddings (384 dimensions, all-MiniLM-L6-v2) per page, written by the page-embedder Lambda with EMBED_PROVIDER=local.';

create index page_vectors_minilm_embedding_hnsw_idx on public.page_vectors_minilm
    using hnsw (embedding extensions.vector_cosine_ops);

-- Reuses page_vectors' trigger function (moves updated_at on merged upserts).
create trigger page_vectors_minilm_touch_updated_at
    before update on public.page_vectors_minilm
    for each row execute function public.page_vectors_touch_updated_at();

alter table public.page_vectors_minilm enable row level security;

revoke all on table public.page_vectors_minilm from anon, authenticated;
grant select, insert, update, delete on table public.page_vectors_minilm to service_role;
