-- Local-stack bootstrap: what a hosted Supabase project already has before any migration runs.
-- Not a migration (Supabase creates all of this itself); scripts/local-stack runs it, as the
-- superuser, before applying supabase/migrations/*.sql. Idempotent.
--
-- psql variable: auth_password (password of the `authenticator` login role).

-- API roles. As on Supabase: `service_role` bypasses row level security, `anon` and
-- `authenticated` do not, and the API logs in as `authenticator` and switches role per request.
do $$
begin
    if not exists (select from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit;
    end if;
    if not exists (select from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit;
    end if;
    if not exists (select from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls;
    end if;
    if not exists (select from pg_roles where rolname = 'authenticator') then
        create role authenticator login noinherit;
    end if;
end
$$;

alter role authenticator with login noinherit password :'auth_password';
grant anon, authenticated, service_role to authenticator;

-- Supabase keeps extensions in their own schema and puts it on the search path.
create schema if not exists extensions;
grant usage on schema extensions to anon, authenticated, service_role;
alter database postgres set search_path to "$user", public, extensions;

-- Supabase's defaults for the public schema: every API role is granted everything on new
-- objects and row level security is what actually restricts access. The migrations revoke
-- what they do not want, so they behave the same here and on a hosted project.
grant usage on schema public to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
    grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
    grant all on sequences to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
    grant all on functions to anon, authenticated, service_role;

-- The Supabase CLI records applied migrations here; so does scripts/local-stack.
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (
    version text primary key,
    name text,
    statements text[]
);
