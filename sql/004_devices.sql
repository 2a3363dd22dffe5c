-- 004_devices: the SSH servers sessions are opened to.
--
-- Why: address and port are handed to a TCP connect and appear in logs, so
-- they are constrained here: an address is a host name or an IP literal
-- (IPv6 without brackets, optionally with a %zone), never starting with '-'
-- (it must never read as an option if it ever reaches a command line).
-- host_key pins the device's OpenSSH public host key line; it and its
-- fingerprint are set together or not at all.

create table devices (
    id                    bigint generated always as identity primary key,
    name                  text not null unique
                          check (char_length(name) between 1 and 128),
    description           text not null default ''
                          check (char_length(description) <= 1024),
    address               text not null
                          check (address ~ '^[A-Za-z0-9._:%-]{1,253}$'
                                 and address !~ '^-'),
    port                  integer not null default 22
                          check (port between 1 and 65535),
    status                text not null default 'active'
                          check (status in ('active', 'inactive')),
    tags                  text[] not null default '{}'
                          check (array_position(tags, null) is null),
    host_key              text
                          check (char_length(host_key) between 1 and 16384
                                 and host_key !~ '[\r\n]'),
    host_key_fingerprint  text
                          check (char_length(host_key_fingerprint)
                                 between 1 and 256),
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now(),
    check ((host_key is null) = (host_key_fingerprint is null))
);

create trigger devices_set_updated_at
    before update on devices
    for each row execute function segura_set_updated_at();
