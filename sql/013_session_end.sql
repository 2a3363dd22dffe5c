-- 013_session_end: an administrator ends a live session.
--
-- Why: a session lives on the node whose worker accepted it, and the
-- request to end it may come through any node.  The request is a row
-- (end_requested_at/by on the session) plus NOTIFY segura_session_end with
-- the session id as payload: the node that owns the session closes it
-- when it hears the notification, and a node that missed it (its listener
-- was reconnecting) finds the row when it re-checks its live sessions.
-- The session itself writes ended_at and end_reason when it is gone.

alter table ssh_sessions
    add column end_requested_at timestamptz,
    add column end_requested_by bigint references users on delete set null;

-- what a node re-checks: its live sessions whose end was requested
create index ssh_sessions_end_requested_idx on ssh_sessions (id)
    where ended_at is null and end_requested_at is not null;
