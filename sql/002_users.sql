-- 002_users: the people who log in and start sessions.
--
-- Why: users are the subject of every grant and of the audit.  The checks
-- here are the last line of defence behind the API's own validation: a user
-- name is what reaches logs and the audit, so it is a restricted alphabet; a
-- password hash is always a self-describing argon2id string so its parameters
-- can be raised later without a schema change.

create table users (
    id              bigint generated always as identity primary key,
    username        text not null unique
                    check (username ~ '^[A-Za-z0-9._@-]{1,64}$'),
    display_name    text not null default ''
                    check (char_length(display_name) <= 256),
    -- argon2id encoded form, carries its own parameters; null = no password
    -- login (identity delegated to nginx through segura_user)
    password_hash   text
                    check (password_hash ~ ('^\$argon2id\$v=19\$m=[0-9]+,'
                                            || 't=[0-9]+,p=[0-9]+'
                                            || '\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$')),
    is_admin        boolean not null default false,
    status          text not null default 'active'
                    check (status in ('active', 'inactive')),
    failed_logins   integer not null default 0 check (failed_logins >= 0),
    last_failed_at  timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);

-- "Admin" and "admin" must not be two accounts: names that differ only in
-- case are indistinguishable in an audit read by a person.  Lookups stay
-- exact (username = $1); this index only refuses the look-alike.
create unique index users_username_lower_key on users (lower(username));

create trigger users_set_updated_at
    before update on users
    for each row execute function segura_set_updated_at();
