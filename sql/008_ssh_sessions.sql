-- 008_ssh_sessions: the audit of every SSH session (who, which key, which
-- device, from where, when, how many bytes, how it ended).
--
-- Why: this is an audit trail, so it must outlive what it points at.  The
-- foreign keys are ON DELETE SET NULL, and the names and address that were
-- true when the session started are copied into the row.  A before-insert
-- trigger fills the copies from the referenced rows when the writer leaves
-- them null, so the C module only has to insert ids.  The id is a uuid so a
-- node can name the session before the row is visible elsewhere.

create table ssh_sessions (
    id              uuid primary key default gen_random_uuid(),
    user_id         bigint references users on delete set null,
    key_id          bigint references ssh_keys on delete set null,
    device_id       bigint references devices on delete set null,
    username        text not null,
    key_name        text not null,
    device_name     text not null,
    device_address  text not null,
    device_port     integer not null check (device_port between 1 and 65535),
    client_addr     text check (char_length(client_addr) <= 64),
    -- the nginx node (host name) whose worker owns the live session
    node            text check (char_length(node) <= 256),
    started_at      timestamptz not null default now(),
    ended_at        timestamptz,
    bytes_in        bigint not null default 0 check (bytes_in >= 0),
    bytes_out       bigint not null default 0 check (bytes_out >= 0),
    end_reason      text check (char_length(end_reason) <= 64),
    exit_status     integer,
    check (ended_at >= started_at)
);

create index ssh_sessions_started_at_idx on ssh_sessions (started_at desc);
create index ssh_sessions_user_started_idx
    on ssh_sessions (user_id, started_at desc);
-- live sessions, per node (a node cleaning up after a restart, the
-- "active sessions" view)
create index ssh_sessions_live_idx on ssh_sessions (node)
    where ended_at is null;

create function segura_ssh_sessions_fill() returns trigger
language plpgsql
as $$
begin
    if new.username is null and new.user_id is not null then
        select u.username into new.username
          from users u where u.id = new.user_id;
    end if;

    if new.key_name is null and new.key_id is not null then
        select k.name into new.key_name
          from ssh_keys k where k.id = new.key_id;
    end if;

    if new.device_id is not null
       and (new.device_name is null or new.device_address is null
            or new.device_port is null)
    then
        select coalesce(new.device_name, d.name),
               coalesce(new.device_address, d.address),
               coalesce(new.device_port, d.port)
          into new.device_name, new.device_address, new.device_port
          from devices d where d.id = new.device_id;
    end if;

    return new;
end;
$$;

create trigger ssh_sessions_fill
    before insert on ssh_sessions
    for each row execute function segura_ssh_sessions_fill();
