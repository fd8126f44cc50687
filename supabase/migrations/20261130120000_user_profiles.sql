-- User profiles kept in sync from a Kafka topic by the generic table-sink function
-- (SINK_TABLE=user_profiles, SINK_CONFLICT_COLUMNS=user_id): one row per user, upserted with
-- merge-duplicates, so a record updates only the columns it carries.
-- Writes come only from the service role; no anonymous access.

create table public.user_profiles (
    user_id text primary key,
    email text,
    display_name text,
    plan text not null default 'free' check (plan in ('free', 'pro', 'team')),
    created_at timestamptz not null default now()
);

comment on table public.user_profiles is 'User profiles written by the table-sink Lambda (upsert on user_id).';

alter table public.user_profiles enable row level security;

-- Supabase grants every API role everything on new tables by default; keep only the service role.
revoke all on table public.user_profiles from anon, authenticated;
grant select, insert, update, delete on table public.user_profiles to service_role;
