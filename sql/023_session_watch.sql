-- 023_session_watch: watching a live session from another worker or node.
--
-- Why: a session's terminal lives on one worker; an administrator may watch
-- it from any worker of any node.  The watcher's worker follows the
-- session's recorded stream (017), so it must hear of each new chunk at
-- once instead of polling: every chunk inserted sends NOTIFY
-- segura_session_chunk with the session id as payload (folded by
-- PostgreSQL to one per session and transaction; a chunk the outbox writes
-- twice inserts nothing the second time and sends nothing).  Workers that
-- follow no such session ignore it.
--
-- segura_session_watch is sent by the watcher's worker when it starts
-- following and when it stops, with {"id": <session id>, "by": <watcher>,
-- "left": <bool>}: the owning worker tells the session's owner, and from
-- the first one flushes that session's recording sooner, so that the
-- watcher's screen is at most a fraction of a second behind
-- (docs/protocol.md, "Watching a session").

create function segura_notify_session_chunk() returns trigger
language plpgsql
as $$
begin
    perform pg_notify('segura_session_chunk', new.session_id::text);
    return null;
end;
$$;

create trigger ssh_session_chunks_notify
    after insert on ssh_session_chunks
    for each row execute function segura_notify_session_chunk();
