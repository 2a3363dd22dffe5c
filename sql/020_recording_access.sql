-- 020_recording_access: who may see a session's audit row and recording,
-- and the recordings that retention has deleted.
--
-- Why: a recording is what a person did on a device, so seeing it is a
-- permission of its own.  access_groups.audit_sessions gives it to a
-- group's members for every session (it is not scoped to the group's
-- devices: an auditor audits the whole fleet).  segura_may_audit() is the
-- one definition of the rule, called by the module for a single session
-- and inlined into the queries that list sessions (a plain SQL function:
-- PostgreSQL expands it in place, and the membership test runs once per
-- query, not per row).  The module passes the viewer's administrator flag
-- (read when it identified the request) and whether the location allows
-- "segura_recording_self on".
--
-- ssh_session_recordings.expired_at: set when segura_recording_retention
-- deleted the recording's chunks; the row stays (its size, its gaps) and
-- so does the session's audit row.  A chunk that arrives for an expired
-- recording (an outbox writing behind its session) is not stored, so an
-- expired recording never grows back.

alter table access_groups
    add column audit_sessions boolean not null default false;

alter table ssh_session_recordings
    add column expired_at timestamptz;

create function segura_may_audit(viewer bigint, viewer_admin boolean,
                                 self_allowed boolean, owner bigint)
returns boolean
language sql stable
as $$
    select viewer_admin
        or (self_allowed and owner = viewer)
        or exists (select 1 from group_members m
                     join access_groups g on g.id = m.group_id
                    where m.user_id = viewer and g.audit_sessions)
$$;

create function segura_chunk_keep() returns trigger
language plpgsql
as $$
begin
    if exists (select 1 from ssh_session_recordings r
                where r.session_id = new.session_id
                  and r.expired_at is not null)
    then
        return null;
    end if;

    return new;
end;
$$;

create trigger ssh_session_chunks_keep
    before insert on ssh_session_chunks
    for each row execute function segura_chunk_keep();

-- retention finds the kept recordings that ended before its cutoff by
-- their end (r.ended_at), and those whose row was never completed (a
-- worker lost) among the few without one: it scans neither the expired
-- ones nor the ones still in their retention
create index ssh_session_recordings_kept_ended_idx
    on ssh_session_recordings (ended_at) where expired_at is null;
create index ssh_session_recordings_kept_open_idx
    on ssh_session_recordings (session_id)
    where expired_at is null and ended_at is null;
