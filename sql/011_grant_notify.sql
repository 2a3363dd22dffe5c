-- 011_grant_notify: tell every node when a grant may have been revoked.
--
-- Why: a live session lives on one node, but the change that should end it
-- (a user or key deactivated, a group losing a permission, a device removed
-- from a grant) can be made through any node or by hand.  PostgreSQL is the
-- only channel between nodes, so every change that can alter the result of
-- segura_grant_check() sends NOTIFY segura_grant_changed with the table's
-- name as payload; a node LISTENing re-checks its live sessions.
--
-- Identical notifications in one transaction are folded into one by
-- PostgreSQL, and nothing is sent for a rolled-back change.  Updates of
-- users, keys and devices notify only when status changes, so a failed
-- login (users.failed_logins) does not make every node re-check.

create function segura_notify_grant_changed() returns trigger
language plpgsql
as $$
begin
    perform pg_notify('segura_grant_changed', tg_table_name);
    return null;
end;
$$;

-- membership, grants and permissions: any change
create trigger group_members_grant_changed
    after insert or update or delete or truncate on group_members
    for each statement execute function segura_notify_grant_changed();
create trigger group_keys_grant_changed
    after insert or update or delete or truncate on group_keys
    for each statement execute function segura_notify_grant_changed();
create trigger group_devices_grant_changed
    after insert or update or delete or truncate on group_devices
    for each statement execute function segura_notify_grant_changed();
create trigger key_devices_grant_changed
    after insert or update or delete or truncate on key_devices
    for each statement execute function segura_notify_grant_changed();
create trigger access_groups_grant_changed
    after update or delete or truncate on access_groups
    for each statement execute function segura_notify_grant_changed();

-- subjects and objects: status changes and deletions
create trigger users_grant_changed
    after update of status on users
    for each row when (old.status is distinct from new.status)
    execute function segura_notify_grant_changed();
create trigger users_grant_deleted
    after delete or truncate on users
    for each statement execute function segura_notify_grant_changed();
create trigger ssh_keys_grant_changed
    after update of status on ssh_keys
    for each row when (old.status is distinct from new.status)
    execute function segura_notify_grant_changed();
create trigger ssh_keys_grant_deleted
    after delete or truncate on ssh_keys
    for each statement execute function segura_notify_grant_changed();
create trigger devices_grant_changed
    after update of status on devices
    for each row when (old.status is distinct from new.status)
    execute function segura_notify_grant_changed();
create trigger devices_grant_deleted
    after delete or truncate on devices
    for each statement execute function segura_notify_grant_changed();
