-- 025_key_rotation: key versions, the version each device uses, and the
-- history of rotations.
--
-- Why: a rotation (POST /api/keys/{id}/rotate, or rotation_days) makes a
-- new key pair, puts its public line on every device of the key while the
-- old key still works there, and switches; a device that cannot be
-- reached, or that refuses the current key, must keep working with the
-- key it has.  So a key has versions: ssh_keys holds the current one
-- (version), ssh_key_versions the older ones that some device still uses,
-- and key_devices.key_version names the version a device uses (null: the
-- current one).  Sessions, checks and rotations read the key of a device
-- through key_device_keys.
--
-- An old version's sealed blobs are moved here unchanged: they are bound
-- to "ssh_keys/<id>/private_key" as the current key's are.  A version row
-- goes once no device uses it (the rotation that leaves it unused deletes
-- it), and with its key.  The foreign key from key_devices keeps a row
-- from naming a version that is gone.
--
-- key_rotations: one row per rotation; at most one running per key, fleet
-- wide (the partial unique index is the lock).  worker_id is the worker
-- that runs it (segura_workers): a running row whose worker is gone is
-- ended as interrupted by the next rotation of that key or by the
-- schedule, and so is one that has run for 6 hours (its end could not be
-- written).  items: one object per device (device, result, detail,
-- from_version, version).

alter table ssh_keys
    add column version integer not null default 1 check (version >= 1),
    add column rotation_days integer
        check (rotation_days between 1 and 3650),
    add column rotated_at timestamptz;

create table ssh_key_versions (
    key_id          bigint not null references ssh_keys on delete cascade,
    version         integer not null check (version >= 1),
    key_type        text not null check (key_type ~ '^[a-z0-9@.-]{1,64}$'),
    bits            integer check (bits > 0),
    public_key      text not null
                    check (char_length(public_key) between 1 and 16384
                           and public_key !~ '[\r\n]'),
    fingerprint     text not null
                    check (char_length(fingerprint) between 1 and 256),
    private_key_enc bytea not null check (octet_length(private_key_enc) >= 29),
    passphrase_enc  bytea check (octet_length(passphrase_enc) >= 29),
    retired_at      timestamptz not null default now(),
    primary key (key_id, version)
);

alter table key_devices
    add column key_version integer check (key_version >= 1),
    add constraint key_devices_key_version_fkey
        foreign key (key_id, key_version)
        references ssh_key_versions (key_id, version);

-- the key a device uses: its version's, or the current one

create view key_device_keys as
select kd.key_id, kd.device_id,
       coalesce(v.version, k.version) as version,
       v.key_id is not null as behind,
       coalesce(v.key_type, k.key_type) as key_type,
       case when v.key_id is null then k.bits else v.bits end as bits,
       coalesce(v.public_key, k.public_key) as public_key,
       coalesce(v.fingerprint, k.fingerprint) as fingerprint,
       coalesce(v.private_key_enc, k.private_key_enc) as private_key_enc,
       case when v.key_id is null then k.passphrase_enc
            else v.passphrase_enc end as passphrase_enc
from key_devices kd
join ssh_keys k on k.id = kd.key_id
left join ssh_key_versions v
       on v.key_id = kd.key_id and v.version = kd.key_version
      and kd.key_version <> k.version;

create table key_rotations (
    id              bigint generated always as identity primary key,
    key_id          bigint not null references ssh_keys on delete cascade,
    trigger         text not null check (trigger in ('manual', 'schedule')),
    retry           boolean not null default false,
    status          text not null default 'running'
                    check (status in ('running', 'rotated', 'partial',
                                      'failed', 'interrupted')),
    from_version    integer not null,
    to_version      integer,
    key_type        text,
    total           integer not null default 0,
    rotated         integer not null default 0,
    items           jsonb not null default '[]',
    detail          text not null default ''
                    check (char_length(detail) <= 512),
    started_by      bigint references users on delete set null,
    worker_id       uuid,
    started_at      timestamptz not null default now(),
    ended_at        timestamptz
);

create unique index key_rotations_running_idx on key_rotations (key_id)
    where status = 'running';

create index key_rotations_key_idx on key_rotations (key_id, id desc);

-- running rotations whose worker is gone (no row, or silent past its
-- window) end as interrupted; returns how many

create function segura_rotations_reap(p_key bigint)
returns integer
language sql
volatile
as $$
    with gone as (
        update key_rotations r
           set status = 'interrupted', ended_at = now(),
               detail = 'the worker running it was lost'
         where r.status = 'running'
           and (p_key is null or r.key_id = p_key)
           and ((r.worker_id is not null
                 and not exists (select 1 from segura_workers w
                                 where w.id = r.worker_id
                                   and w.heartbeat_at > now() - w.lost_after)
                 and r.started_at < now() - interval '5 seconds')
                -- no rotation runs this long: its end was never written
                or r.started_at < now() - interval '6 hours')
        returning 1)
    select count(*)::integer from gone
$$;
