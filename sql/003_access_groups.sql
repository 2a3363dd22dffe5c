-- 003_access_groups: access groups, their three permissions, their members.
--
-- Why: a user may act only through a group that grants all three of
-- use_credentials, access_devices and remote_session (see
-- segura_grant_check).  Permissions default to false: a new group grants
-- nothing until an administrator says so.
--
-- ON DELETE: deleting a group or a user removes the membership (cascade); a
-- membership means nothing without both ends.

create table access_groups (
    id              bigint generated always as identity primary key,
    name            text not null unique
                    check (char_length(name) between 1 and 128),
    description     text not null default ''
                    check (char_length(description) <= 1024),
    use_credentials boolean not null default false,
    access_devices  boolean not null default false,
    remote_session  boolean not null default false,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);

create trigger access_groups_set_updated_at
    before update on access_groups
    for each row execute function segura_set_updated_at();

create table group_members (
    group_id    bigint not null references access_groups on delete cascade,
    user_id     bigint not null references users on delete cascade,
    primary key (group_id, user_id)
);

-- the grant check starts from the user
create index group_members_user_id_idx on group_members (user_id);
