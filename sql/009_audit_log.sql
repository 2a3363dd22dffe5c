-- 009_audit_log: who changed what, and who logged in (or failed to).
--
-- Why: an administrator's changes to keys, devices, groups and users, and
-- every login attempt, must be traceable after the fact, even once the actor
-- is deleted: actor_id is ON DELETE SET NULL and actor_name keeps the name.
-- action is a short lower-case word rather than a fixed list so a new kind
-- of event needs no migration; the ones in use: create, update, delete,
-- login, login_failed, logout, session_start, session_end,
-- session_terminate.  detail never holds a secret (no key, passphrase,
-- password or token).

create table audit_log (
    id           bigint generated always as identity primary key,
    at           timestamptz not null default now(),
    actor_id     bigint references users on delete set null,
    actor_name   text check (char_length(actor_name) <= 256),
    action       text not null check (action ~ '^[a-z][a-z_]{0,63}$'),
    object_type  text not null check (object_type ~ '^[a-z][a-z_]{0,63}$'),
    object_id    text check (char_length(object_id) <= 256),
    client_addr  text check (char_length(client_addr) <= 64),
    detail       jsonb not null default '{}'
);

create index audit_log_at_idx on audit_log (at desc);
create index audit_log_object_idx on audit_log (object_type, object_id);
create index audit_log_actor_id_idx on audit_log (actor_id);
