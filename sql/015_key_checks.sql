-- 015_key_checks: the last deployment check of each key on each device.
--
-- Why: POST /api/keys/{id}/check connects to the key's devices and tries
-- public-key authentication without opening a shell; the SSH keys report
-- and the Remote Access report show the outcome ("deployed on 3 of 4").
-- Only the latest result per key and device is kept here; every check is
-- also an audit_log row (action 'check'), which is the history.
--
-- result: deployed (the device accepted the key), refused (it did not),
-- unreachable (no TCP or SSH connection), timeout (segura_connect_timeout
-- passed), host_key_mismatch (not the pinned host key), host_key_unknown
-- (none pinned and segura_host_key_policy strict), error (ours: a key
-- that cannot be used, the thread pool; the log says more).
-- detail: what failed, for a person (no secret: library error texts and
-- host key fingerprints).  Rows go with their key or device.

create table key_checks (
    key_id      bigint not null references ssh_keys on delete cascade,
    device_id   bigint not null references devices on delete cascade,
    result      text not null
                check (result in ('deployed', 'refused', 'unreachable',
                                  'timeout', 'host_key_mismatch',
                                  'host_key_unknown', 'error')),
    detail      text not null default ''
                check (char_length(detail) <= 512),
    checked_at  timestamptz not null default now(),
    checked_by  bigint references users on delete set null,
    primary key (key_id, device_id)
);

create index key_checks_device_id_idx on key_checks (device_id);
