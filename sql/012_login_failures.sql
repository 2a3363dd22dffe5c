-- 012_login_failures: consecutive failed logins per user name.
--
-- Why: repeated failures for one name are slowed down (the API refuses
-- attempts with 429 for min(2^(count-5), 900) seconds after the fifth
-- consecutive failure).  The record is keyed by the lower-cased name as
-- typed, not by users.id, so that names without an account are throttled
-- the same way (no enumeration by the throttle's behaviour), and it lives
-- here so every node of a fleet sees the same count.  A successful login
-- deletes the row.

create table login_failures (
    username    text primary key check (char_length(username) <= 256),
    count       integer not null default 0 check (count >= 0),
    last_at     timestamptz not null default now()
);

create index login_failures_last_at_idx on login_failures (last_at);
