-- Similarity search over the page vectors, the Supabase way: a function the API exposes as
-- `POST /rest/v1/rpc/match_page_chunks` (supabase-js / supabase-py `.rpc("match_page_chunks",
-- {...})`), so a RAG service asks for the nearest chunks without writing SQL.
--
--   query_embedding  the query's vector, embedded with the same model (and query prefix) as the
--                    pages; its dimension picks the table: 768 -> page_vectors, 384 ->
--                    page_vectors_minilm (a pgvector column has one dimension, so each model size
--                    has its own table). Any other dimension is an error.
--   match_count      how many chunks, 1..1000 (default 10), nearest first.
--   filter           a JSON object whose keys must all match: "page_id" (text), "model" (text,
--                    e.g. only the current model's vectors while a re-embed is under way),
--                    "chunk_index" (number). Unknown keys are an error, never "no rows".
--
-- Returns page_id, chunk_index, chunk_text and similarity (cosine similarity, 1 - the `<=>`
-- distance the tables' HNSW indexes are built for), nearest first.
--
-- `security invoker`: it reads with the caller's rights, so row level security decides what a
-- caller sees. Only service_role may call it, like the tables it reads (a RAG backend uses the
-- secret key). To serve signed-in users, grant them select on the table, add a policy, and grant
-- execute here to `authenticated`.
--
-- HNSW returns at most hnsw.ef_search candidates before the filter applies; the function raises
-- ef_search to match_count and, with pgvector >= 0.8, turns on the strict-order iterative index
-- scan so a filter does not leave it short of rows. Both settings are put back before it returns.

create function public.match_page_chunks(
    query_embedding extensions.vector,
    match_count int default 10,
    filter jsonb default '{}'::jsonb
)
returns table (
    page_id text,
    chunk_index int,
    chunk_text text,
    similarity double precision
)
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
    dims int := extensions.vector_dims(query_embedding);
    unknown text;
    old_ef_search text := current_setting('hnsw.ef_search', true);
    old_iterative text := current_setting('hnsw.iterative_scan', true);
begin
    if match_count is null or match_count < 1 or match_count > 1000 then
        raise exception 'match_count must be between 1 and 1000, got %', match_count
            using errcode = '22023';
    end if;
    filter := coalesce(filter, '{}'::jsonb);
    if jsonb_typeof(filter) <> 'object' then
        raise exception 'filter must be a JSON object, got %', jsonb_typeof(filter)
            using errcode = '22023';
    end if;
    select string_agg(k, ', ') into unknown
    from jsonb_object_keys(filter) as k
    where k not in ('page_id', 'model', 'chunk_index');
    if unknown is not null then
        raise exception 'unknown filter key(s): % (known: page_id, model, chunk_index)', unknown
            using errcode = '22023';
    end if;

    perform set_config('hnsw.ef_search', greatest(40, match_count)::text, true);
    if old_iterative is not null then
        perform set_config('hnsw.iterative_scan', 'strict_order', true);
    end if;

    if dims = 768 then
        return query
            select v.page_id, v.chunk_index, v.chunk_text,
                   1 - (v.embedding operator(extensions.<=>) query_embedding)
            from public.page_vectors v
            where jsonb_build_object('page_id', v.page_id, 'model', v.model,
                                     'chunk_index', v.chunk_index) @> filter
            order by v.embedding operator(extensions.<=>) query_embedding
            limit match_count;
    elsif dims = 384 then
        return query
            select v.page_id, v.chunk_index, v.chunk_text,
                   1 - (v.embedding operator(extensions.<=>) query_embedding)
            from public.page_vectors_minilm v
            where jsonb_build_object('page_id', v.page_id, 'model', v.model,
                                     'chunk_index', v.chunk_index) @> filter
            order by v.embedding operator(extensions.<=>) query_embedding
            limit match_count;
    else
        raise exception 'query_embedding has % dimensions; the page vectors have 768 (page_vectors) or 384 (page_vectors_minilm)', dims
            using errcode = '22000';
    end if;

    if old_ef_search is not null then
        perform set_config('hnsw.ef_search', old_ef_search, true);
    end if;
    if old_iterative is not null then
        perform set_config('hnsw.iterative_scan', old_iterative, true);
    end if;
end;
$$;

comment on function public.match_page_chunks(extensions.vector, int, jsonb) is
    'Nearest page chunks to a query embedding (cosine), optionally filtered by page_id, model, chunk_index.';

-- Supabase grants execute on new functions to every API role (and Postgres to public).
revoke all on function public.match_page_chunks(extensions.vector, int, jsonb)
    from public, anon, authenticated;
grant execute on function public.match_page_chunks(extensions.vector, int, jsonb) to service_role;
