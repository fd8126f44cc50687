-- vault.raw no longer repeats what the columns hold (issue 24). gift-persister used to store the
-- whole event in `raw`, a second copy of page_id, question and answer (and of a given event_id).
-- Measured on the local stack (scripts/bench-vault-row, 10,000-row upserts, 15 interleaved
-- rounds, medians): that copy cost 32% of the SQL statement's time and 24% of the PostgREST
-- writes, 42% of the bytes on disk per row and 30% of the WAL; keeping in `raw` only the rest of
-- the event (a 60-character gift: `{"ts": ...}`) took 22% / 10% off the time, 450 -> 293 bytes
-- on disk and 606 -> 454 bytes of WAL per row. The other parts measured less than the noise of
-- the shared machine (provenance columns, the page_id index, the timestamptz parse) and stay.
--
-- From gift-persister's next deployment on, `raw` holds the event less page_id, question,
-- answer and an event_id equal to the column: `ts` as it came (a number or a string with its
-- offset), null fields and unknown fields. Rows stored before keep their whole event in `raw`;
-- both kinds rebuild the event with public.vault_event(v), also readable through the API as a
-- computed field: GET /vault?select=event_id,vault_event. An event_id the function derived (the
-- event had none) is included too: 64 hex digits, gift-persister's content hash.
comment on column public.vault.raw is
    'The event as received less what the columns hold verbatim (page_id, question, answer, a given event_id); rows before 20261207140000 hold the whole event. public.vault_event(vault) rebuilds it.';

create function public.vault_event(v public.vault) returns jsonb
language sql
immutable
security invoker
set search_path = ''
as $$
    select jsonb_build_object('event_id', v.event_id, 'page_id', v.page_id,
                              'question', v.question, 'answer', v.answer) || v.raw
$$;

comment on function public.vault_event(public.vault) is
    'The gift event of a vault row: its columns page_id, question, answer, event_id and what raw holds.';

revoke all on function public.vault_event(public.vault) from public, anon, authenticated;
grant execute on function public.vault_event(public.vault) to service_role;
