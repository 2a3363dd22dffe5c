-- 005_ssh_keys: registered SSH keys and the devices each key may reach.
--
-- Why: the private key and its passphrase are stored only as AES-256-GCM
-- blobs made by the C vault (1 key-id byte, 12-byte nonce, ciphertext,
-- 16-byte tag), so anything shorter than 29 bytes cannot be one: the check
-- catches a plaintext or truncated write.  A key reaches a device only
-- through a key_devices row, and at most one of a key's devices is its main
-- device.
--
-- ON DELETE: deleting a key or a device removes their associations
-- (cascade), including when the device was the key's main device: the key
-- then simply has no main device until an administrator picks one.  Refusing
-- the delete instead would make retiring a device depend on editing every
-- key first.

create table ssh_keys (
    id              bigint generated always as identity primary key,
    name            text not null unique
                    check (char_length(name) between 1 and 128),
    status          text not null default 'active'
                    check (status in ('active', 'inactive')),
    tags            text[] not null default '{}'
                    check (array_position(tags, null) is null),
    -- the person or team owning the key on the device side
    owner           text not null default ''
                    check (char_length(owner) <= 256),
    -- login name on the device
    username        text not null
                    check (char_length(username) between 1 and 64
                           and username !~ '[[:space:][:cntrl:]]'
                           and username !~ '^-'),
    key_type        text not null
                    check (key_type ~ '^[a-z0-9@.-]{1,64}$'),
    bits            integer check (bits > 0),
    public_key      text not null
                    check (char_length(public_key) between 1 and 16384
                           and public_key !~ '[\r\n]'),
    fingerprint     text not null
                    check (char_length(fingerprint) between 1 and 256),
    private_key_enc bytea not null check (octet_length(private_key_enc) >= 29),
    passphrase_enc  bytea check (octet_length(passphrase_enc) >= 29),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);

create index ssh_keys_fingerprint_idx on ssh_keys (fingerprint);

create trigger ssh_keys_set_updated_at
    before update on ssh_keys
    for each row execute function segura_set_updated_at();

create table key_devices (
    key_id      bigint not null references ssh_keys on delete cascade,
    device_id   bigint not null references devices on delete cascade,
    is_main     boolean not null default false,
    created_at  timestamptz not null default now(),
    primary key (key_id, device_id)
);

-- at most one main device per key
create unique index key_devices_one_main_idx on key_devices (key_id)
    where is_main;

create index key_devices_device_id_idx on key_devices (device_id);
