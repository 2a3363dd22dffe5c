-- 024_session_moderate: locking a live session's input, ending it with a
-- message.
--
-- Why: an administrator who watches a privileged session must be able to
-- stop the user's keystrokes at once, and to end the session with a word
-- the user reads, from whichever node the administrator is on.  The
-- owning worker is told through NOTIFY segura_session_moderate, whose
-- payload is a JSON object: {"id": <session id>, "action": "lock" |
-- "unlock" | "message", "by": <user name>, "message": <text>}; "message"
-- comes just before the segura_session_end of an end (013).  locked keeps
-- the state for the session list and for watchers who join later;
-- end_message keeps what the user was told.  The audit_log actions of
-- watching and moderating (009 lets any lower-case word in):
-- session_watch, session_lock, session_unlock, and session_terminate with
-- detail.message.

alter table ssh_sessions
    add column locked boolean not null default false,
    add column end_message text check (char_length(end_message) <= 500);
