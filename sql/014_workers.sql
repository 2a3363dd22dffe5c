-- 014_workers: the workers of the fleet and their heartbeats; the live
-- sessions of a worker that died are ended as node_lost.
--
-- Why: a session's audit row is completed by the worker that runs it.  A
-- worker killed outright, or a node that loses power, completes nothing,
-- and its rows would stay "live" forever.  So every worker process has a
-- row here (a fresh random id per process, so that a respawned worker or a
-- restarted node never takes over the rows of its predecessor), stamps it
-- every third of its window (lost_after, the segura_node_lost_timeout of
-- its node) and names it in the rows of the sessions it starts
-- (ssh_sessions.worker_id).  Every heartbeat also ends, in the same round
-- trip, the live rows of the workers that have been silent for longer than
-- their own window, and forgets such workers once nothing of theirs is
-- live.  All times are the database's clock, never the workers'.
--
-- Only rows with ended_at null are ever touched, and the dead worker's row
-- is locked (skip locked) while its sessions are ended, so any number of
-- workers on any number of nodes may run this at once: a row is ended
-- once.  ended_at is the dead worker's last heartbeat (the last moment it
-- was known to be alive), or the session's start if that was later.
--
-- A worker reaps only what it can vouch for: silence is counted from the
-- later of the other worker's last heartbeat and the moment the reaping
-- worker's own heartbeats became regular again (up_since, reset when its
-- previous heartbeat is older than half its window: it missed a beat).
-- After an outage of the database, which silences every worker at once,
-- nobody is declared lost before each has had a whole window to come back.
--
-- worker_id is not a foreign key: the audit outlives the worker, whose row
-- is deleted when it is forgotten.  Rows from before this migration have
-- no worker and are never touched.  A live row whose worker has no row at
-- all (its worker never got a heartbeat through, or wrote it after being
-- forgotten) is ended once it is older than the reaping worker's window,
-- at its start (nothing later is known of it).

create table segura_workers (
    id              uuid primary key,
    -- the nginx node (host name) and the worker's process id, for people
    node            text not null check (char_length(node) <= 256),
    pid             integer not null check (pid > 0),
    started_at      timestamptz not null default now(),
    heartbeat_at    timestamptz not null default now(),
    -- silent for longer than this: lost
    lost_after      interval not null default interval '30 seconds'
                    check (lost_after > interval '0'),
    -- since when its heartbeats have been regular (see above)
    up_since        timestamptz not null default now()
);

alter table ssh_sessions add column worker_id uuid;

-- the live sessions of one worker (the heartbeat's reaper, a goodbye)
create index ssh_sessions_worker_live_idx on ssh_sessions (worker_id)
    where ended_at is null;


-- One heartbeat of worker p_worker; returns a row per lost worker whose
-- sessions this call ended (lost_worker null: rows without a worker row).

create function segura_worker_heartbeat(p_worker uuid, p_node text,
                                        p_pid integer,
                                        p_lost_after interval)
returns table (lost_worker uuid, lost_node text, lost_pid integer,
               ended integer)
language plpgsql
volatile
as $$
declare
    v_up_since  timestamptz;
    v_dead      record;
    v_ended     integer;
begin
    insert into segura_workers as w (id, node, pid, lost_after)
    values (p_worker, p_node, p_pid, p_lost_after)
    on conflict (id) do update
       set heartbeat_at = now(),
           lost_after = excluded.lost_after,
           up_since = case when w.heartbeat_at < now() - w.lost_after / 2
                           then now() else w.up_since end
    returning w.up_since into v_up_since;

    for v_dead in
        select w.id, w.node, w.pid, w.heartbeat_at
          from segura_workers w
         where w.id <> p_worker
           and now() - greatest(w.heartbeat_at, v_up_since) > w.lost_after
         order by w.heartbeat_at
           for update skip locked
    loop
        update ssh_sessions s
           set ended_at = greatest(v_dead.heartbeat_at, s.started_at),
               end_reason = 'node_lost'
         where s.worker_id = v_dead.id
           and s.ended_at is null;

        get diagnostics v_ended = row_count;

        delete from segura_workers w
         where w.id = v_dead.id
           and not exists (select 1 from ssh_sessions s
                            where s.worker_id = w.id and s.ended_at is null);

        if v_ended > 0 then
            lost_worker := v_dead.id;
            lost_node := v_dead.node;
            lost_pid := v_dead.pid;
            ended := v_ended;
            return next;
        end if;
    end loop;

    update ssh_sessions s
       set ended_at = s.started_at, end_reason = 'node_lost'
     where s.id in (select o.id
                      from ssh_sessions o
                     where o.worker_id is not null
                       and o.ended_at is null
                       and now() - greatest(o.started_at, v_up_since)
                           > p_lost_after
                       and not exists (select 1 from segura_workers w
                                        where w.id = o.worker_id)
                       for update of o skip locked)
       and s.ended_at is null;

    get diagnostics v_ended = row_count;

    if v_ended > 0 then
        lost_worker := null;
        lost_node := null;
        lost_pid := null;
        ended := v_ended;
        return next;
    end if;
end;
$$;

comment on function segura_worker_heartbeat(uuid, text, integer, interval) is
    'stamps the worker''s row; ends the live sessions of lost workers';


-- An exiting worker that has nothing live any more deletes its row (true).
-- While rows of its own are still live (sessions that are closing, whose
-- end is still to be written), it stamps its heartbeat instead: it is
-- alive, and those rows are its own to end.  If it exits before they are
-- ended, the fleet ends them as node_lost like those of any lost worker.

create function segura_worker_goodbye(p_worker uuid)
returns boolean
language plpgsql
volatile
as $$
begin
    delete from segura_workers w
     where w.id = p_worker
       and not exists (select 1 from ssh_sessions s
                        where s.worker_id = w.id and s.ended_at is null);

    if found then
        return true;
    end if;

    update segura_workers set heartbeat_at = now() where id = p_worker;

    return false;
end;
$$;

comment on function segura_worker_goodbye(uuid) is
    'deletes the row of an exiting worker with nothing live, else stamps it';
