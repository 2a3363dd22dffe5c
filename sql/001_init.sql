-- 001_init: shared helpers every later table relies on.
--
-- Why: several tables carry an updated_at column that must change on every
-- update, whoever writes the row (the C module, psql by hand, a later
-- migration).  A trigger keeps that true in the schema instead of trusting
-- each writer to remember it.
--
-- Rules for every migration (tools/segura-migrate runs each file in its own
-- transaction, after recording its version): no begin/commit of its own, no
-- "create index concurrently", no "create extension" (the application role is
-- not a superuser; gen_random_uuid() is built in since PostgreSQL 13).

create function segura_set_updated_at() returns trigger
language plpgsql
as $$
begin
    new.updated_at := now();
    return new;
end;
$$;

comment on function segura_set_updated_at() is
    'before-update trigger: keeps updated_at current';
