-- 015_login_attempts: login attempts are counted before the password is
-- verified, per user name and per client address, in one statement.
--
-- Why: checking the failure count, verifying the password (argon2id) and
-- then recording the failure as three statements let N parallel wrong
-- passwords all pass the check; and a flood of random user names from one
-- address was never throttled at all.  segura_login_attempt() counts the
-- attempt against both budgets under row locks, so concurrent attempts of
-- one name or one address are serialised, and a refused attempt costs no
-- argon2id work.  A successful login gives its attempt back.
--
-- The failures are no longer keyed by the name as typed (people type
-- passwords into the name field): the module stores a keyed hash of the
-- lower-cased name (HMAC-SHA-256 under a key derived from the master key,
-- hex), so the table holds no typed text.  The old rows, keyed by plain
-- names, are dropped: the worst that does is end a lockout early.

delete from login_failures;

alter table login_failures rename column username to name_key;

alter table login_failures
    add constraint login_failures_name_key_hex
        check (name_key ~ '^[0-9a-f]{64}$');

comment on column login_failures.name_key is
    'HMAC-SHA-256 of the lower-cased user name as typed, hex (see 015)';

create table login_addresses (
    addr          text primary key check (char_length(addr) <= 64),
    count         integer not null default 0 check (count >= 0),
    window_start  timestamptz not null default now()
);

create index login_addresses_window_start_idx
    on login_addresses (window_start);

-- One attempt of p_name_key from p_addr.  p_addr_limit attempts per
-- p_addr_window seconds and address (0: no address budget); a name is
-- refused for min(2^(n-5), 900) seconds after its n-th consecutive
-- failure, n >= 5 (012).  Returns 'ok' (the attempt is counted, as a
-- failure until segura_login_succeeded() says otherwise), 'name' or
-- 'address' (refused, nothing counted), with the seconds until the
-- refusing budget allows an attempt again.
create function segura_login_attempt(p_name_key text, p_addr text,
                                     p_addr_limit integer,
                                     p_addr_window double precision)
returns table (result text, retry_after integer)
language plpgsql
as $$
declare
    v_count   integer;
    v_start   timestamptz;
    v_fails   integer;
    v_last    timestamptz;
    v_wait    double precision;
begin
    -- rows quiet for a day go (indexed; the caller's own rows stay)
    delete from login_failures
     where last_at < now() - interval '1 day' and name_key <> p_name_key;
    delete from login_addresses
     where window_start < now() - interval '1 day' and addr <> p_addr;

    -- the address first, then the name: one lock order for every caller
    if p_addr_limit > 0 then
        insert into login_addresses (addr, window_start)
        values (left(p_addr, 64), clock_timestamp())
        on conflict (addr) do nothing;

        select a.count, a.window_start into v_count, v_start
          from login_addresses a where a.addr = left(p_addr, 64)
           for update;

        if v_start <= clock_timestamp()
                      - make_interval(secs => p_addr_window)
        then
            v_count := 0;
            v_start := clock_timestamp();
        end if;

        if v_count >= p_addr_limit then
            return query select 'address'::text,
                greatest(1, ceil(extract(epoch from v_start
                    + make_interval(secs => p_addr_window)
                    - clock_timestamp())))::integer;
            return;
        end if;
    end if;

    insert into login_failures (name_key, count, last_at)
    values (p_name_key, 0, clock_timestamp())
    on conflict (name_key) do nothing;

    select f.count, f.last_at into v_fails, v_last
      from login_failures f where f.name_key = p_name_key
       for update;

    if v_fails >= 5 then
        v_wait := least(power(2, v_fails - 5), 900);

        if v_last > clock_timestamp() - make_interval(secs => v_wait) then
            return query select 'name'::text,
                greatest(1, ceil(extract(epoch from v_last
                    + make_interval(secs => v_wait)
                    - clock_timestamp())))::integer;
            return;
        end if;
    end if;

    update login_failures set count = v_fails + 1, last_at = clock_timestamp()
     where name_key = p_name_key;

    if p_addr_limit > 0 then
        update login_addresses set count = v_count + 1, window_start = v_start
         where addr = left(p_addr, 64);
    end if;

    return query select 'ok'::text, 0;
end;
$$;

comment on function segura_login_attempt(text, text, integer,
                                         double precision) is
    'counts a login attempt per name and address before verification (015)';

-- The attempt of p_name_key from p_addr succeeded: the name's failures go,
-- the address gets its attempt back.
create function segura_login_succeeded(p_name_key text, p_addr text)
returns void
language sql
as $$
    delete from login_failures where name_key = p_name_key;
    update login_addresses set count = greatest(count - 1, 0)
     where addr = left(p_addr, 64);
$$;

-- The attempt of p_name_key from p_addr was counted but not verified (no
-- argon2id slot was free): both budgets get it back.
create function segura_login_refund(p_name_key text, p_addr text)
returns void
language sql
as $$
    update login_failures set count = greatest(count - 1, 0)
     where name_key = p_name_key;
    update login_addresses set count = greatest(count - 1, 0)
     where addr = left(p_addr, 64);
$$;
