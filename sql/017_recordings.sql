-- 017_recordings: every SSH session's recording, in chunks.
--
-- Why: what a privileged-access proxy is asked is "what did they do on
-- that box?", and any node must be able to answer for any session, so the
-- recording lives in the fleet's one store.  (016 is left to another
-- branch that also numbered a migration 015.)
--
-- ssh_session_recordings: one row per recorded session, written when the
-- shell opens (its size for the asciicast header, whether input is
-- recorded) and completed when it ends (chunks, event bytes, whether
-- events were dropped by "segura_recording_overflow drop" and where: gaps
-- is a json array of [from_ms, to_ms] since the start).  A session with no
-- row was not recorded (segura_recording off).
--
-- ssh_session_chunks: at most 64 KiB of events each, in order (seq from
-- 0).  data is a zstd frame sealed with the vault's AES-256-GCM:
-- key_id (1) | nonce (12) | ciphertext | tag (16), with
-- "ssh_sessions/<session id>/chunk/<seq>" as associated data, so a chunk
-- can be neither read without the master key nor moved to another session
-- or place.  t_first and t_last (ms since the start) and plain_size (event
-- bytes before compression) are in clear, for seeking and sizing.  The
-- writer inserts with "on conflict do nothing" (the outbox may write a
-- chunk twice).  Chunks go with their recording, recordings with their
-- session.

create table ssh_session_recordings (
    session_id  uuid primary key references ssh_sessions on delete cascade,
    width       integer not null check (width between 1 and 1000),
    height      integer not null check (height between 1 and 1000),
    input       boolean not null,
    started_at  timestamptz not null,
    ended_at    timestamptz,
    chunks      integer check (chunks >= 0),
    bytes       bigint check (bytes >= 0),
    incomplete  boolean not null default false,
    gaps        jsonb
);

create table ssh_session_chunks (
    session_id  uuid not null
                references ssh_session_recordings on delete cascade,
    seq         integer not null check (seq >= 0),
    t_first     integer not null check (t_first >= 0),
    t_last      integer not null check (t_last >= t_first),
    plain_size  integer not null check (plain_size between 1 and 1048576),
    data        bytea not null,
    primary key (session_id, seq)
);
