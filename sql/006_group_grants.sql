-- 006_group_grants: which keys and which devices an access group grants.
--
-- Why: a session needs a group of the user that grants both the key and the
-- device (segura_grant_check); keeping the two lists separate mirrors how an
-- administrator thinks ("this team may use these keys, on these devices").
--
-- ON DELETE: deleting a group, a key or a device removes its grants
-- (cascade); a grant naming something that no longer exists means nothing.

create table group_keys (
    group_id    bigint not null references access_groups on delete cascade,
    key_id      bigint not null references ssh_keys on delete cascade,
    primary key (group_id, key_id)
);

create index group_keys_key_id_idx on group_keys (key_id);

create table group_devices (
    group_id    bigint not null references access_groups on delete cascade,
    device_id   bigint not null references devices on delete cascade,
    primary key (group_id, device_id)
);

create index group_devices_device_id_idx on group_devices (device_id);
