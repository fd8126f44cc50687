-- Replaying dead letters (`kl dead-letters replay`): each row records when it was last replayed
-- and what became of it, and a writer that dead-letters the same record again (same function,
-- topic, partition and offset) leaves one row, as before, but stamps it: that is how a replay
-- tells "refused again" from "stored". Functions need no change: their ignore-duplicates upsert
-- fires the trigger below before the conflict is detected.
--
-- replay_outcome:
--   stored         the function accepted the record (stored it, or settled it as nothing to do)
--   dead_lettered  the function refused it again (last_error_code / last_error_message say why)
--   failed         the function reported it for redelivery (an environment fault): replay later
--   superseded     page-embedder only: the page has a newer version, the record was not sent

alter table public.dead_letters
    add column if not exists replayed_at timestamptz,
    add column if not exists replay_outcome text,
    add column if not exists last_dead_lettered_at timestamptz,
    add column if not exists last_error_code text,
    add column if not exists last_error_message text;

alter table public.dead_letters drop constraint if exists dead_letters_replay_outcome_check;
alter table public.dead_letters add constraint dead_letters_replay_outcome_check
    check (replay_outcome in ('stored', 'dead_lettered', 'failed', 'superseded'));

comment on column public.dead_letters.replayed_at is 'When `kl dead-letters replay` last replayed the record.';
comment on column public.dead_letters.replay_outcome is
    'What the last replay did: stored, dead_lettered, failed (redeliver later) or superseded.';
comment on column public.dead_letters.last_dead_lettered_at is
    'When a writer last dead-lettered the record again (the row itself is kept once).';

-- A second dead letter of the same record stamps the existing row; the insert then meets the
-- unique key and the writer's ignore-duplicates does nothing, so the record stays stored once.
create or replace function public.dead_letters_note_repeat() returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
    update public.dead_letters d
       set last_dead_lettered_at = now(),
           last_error_code = new.error_code,
           last_error_message = new.error_message
     where d.function_name = new.function_name
       and d.topic = new.topic
       and d.kafka_partition = new.kafka_partition
       and d.kafka_offset = new.kafka_offset;
    return new;
end
$$;

drop trigger if exists dead_letters_note_repeat on public.dead_letters;
create trigger dead_letters_note_repeat
    before insert on public.dead_letters
    for each row execute function public.dead_letters_note_repeat();

create index if not exists dead_letters_function_code_idx
    on public.dead_letters (function_name, error_code, created_at);
