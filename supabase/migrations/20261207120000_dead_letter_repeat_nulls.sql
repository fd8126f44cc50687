-- A record dead-lettered again is stamped on its one row (20261130130000_dead_letter_replay.sql),
-- but the trigger matched topic, partition and offset with `=`, which is never true for NULL:
-- a dead letter without them (written by hand, or by a writer that has no Kafka position) met the
-- unique key (`nulls not distinct`) and was dropped without the stamp. The trigger now matches
-- them as the unique key does, with `is not distinct from`.
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
       and d.topic is not distinct from new.topic
       and d.kafka_partition is not distinct from new.kafka_partition
       and d.kafka_offset is not distinct from new.kafka_offset;
    return new;
end
$$;
