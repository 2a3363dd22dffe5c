-- 007_web_sessions: browser login sessions (the segura_session cookie).
--
-- Why: the cookie carries a random token; only its SHA-256 is stored, so a
-- read of this table (a backup, a replica) does not hand out live sessions.
-- The hash length is checked so a raw token can never be stored by mistake.
-- Any node of the fleet can validate or revoke a session here.
--
-- ON DELETE: deleting a user ends their web sessions (cascade).

create table web_sessions (
    id            bigint generated always as identity primary key,
    token_hash    bytea not null unique check (octet_length(token_hash) = 32),
    user_id       bigint not null references users on delete cascade,
    created_at    timestamptz not null default now(),
    last_seen_at  timestamptz not null default now(),
    expires_at    timestamptz not null,
    revoked_at    timestamptz,
    client_addr   text check (char_length(client_addr) <= 64),
    user_agent    text check (char_length(user_agent) <= 1024),
    check (expires_at > created_at)
);

create index web_sessions_user_id_idx on web_sessions (user_id);
create index web_sessions_expires_at_idx on web_sessions (expires_at);
