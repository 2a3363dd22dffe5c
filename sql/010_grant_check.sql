-- 010_grant_check: may this user start a session with this key on this
-- device, and if not, why not.
--
-- Why in SQL: every node of the fleet must decide the same way, in one round
-- trip, on the rows as they are now; and the reason is shown to people (the
-- Remote Access report, a 403/404 body), so the order of the checks is part
-- of the contract:
--
--   unknown_user, user_inactive, unknown_key, unknown_device, key_inactive,
--   device_inactive, key_not_associated, no_group, no_use_credentials,
--   no_access_devices, no_remote_session, key_not_granted,
--   device_not_granted, not_granted_together, else 'ok'.
--
-- A permission code is reported only when no group of the user has all
-- three permissions; it names the first permission (in the order above)
-- missing from the user's group with the most permissions (ties: lowest
-- group id).  Administrators are not exempt: least privilege.

create function segura_grant_check(p_user bigint, p_key bigint,
                                   p_device bigint)
returns text
language plpgsql
stable
as $$
declare
    v_status  text;
    v_key     text;
    v_device  text;
    v_uc      boolean;
    v_ad      boolean;
    v_rs      boolean;
begin
    select u.status into v_status from users u where u.id = p_user;
    if not found then
        return 'unknown_user';
    end if;
    if v_status <> 'active' then
        return 'user_inactive';
    end if;

    select k.status into v_key from ssh_keys k where k.id = p_key;
    if not found then
        return 'unknown_key';
    end if;

    select d.status into v_device from devices d where d.id = p_device;
    if not found then
        return 'unknown_device';
    end if;

    if v_key <> 'active' then
        return 'key_inactive';
    end if;
    if v_device <> 'active' then
        return 'device_inactive';
    end if;

    if not exists (select 1 from key_devices kd
                    where kd.key_id = p_key and kd.device_id = p_device)
    then
        return 'key_not_associated';
    end if;

    -- the user's best group: a fully permitted one if there is any
    select g.use_credentials, g.access_devices, g.remote_session
      into v_uc, v_ad, v_rs
      from group_members m
      join access_groups g on g.id = m.group_id
     where m.user_id = p_user
     order by g.use_credentials::int + g.access_devices::int
              + g.remote_session::int desc,
              g.id
     limit 1;
    if not found then
        return 'no_group';
    end if;
    if not v_uc then
        return 'no_use_credentials';
    end if;
    if not v_ad then
        return 'no_access_devices';
    end if;
    if not v_rs then
        return 'no_remote_session';
    end if;

    if not exists (select 1
                     from group_members m
                     join access_groups g on g.id = m.group_id
                     join group_keys gk on gk.group_id = g.id
                    where m.user_id = p_user and gk.key_id = p_key
                      and g.use_credentials and g.access_devices
                      and g.remote_session)
    then
        return 'key_not_granted';
    end if;

    if not exists (select 1
                     from group_members m
                     join access_groups g on g.id = m.group_id
                     join group_devices gd on gd.group_id = g.id
                    where m.user_id = p_user and gd.device_id = p_device
                      and g.use_credentials and g.access_devices
                      and g.remote_session)
    then
        return 'device_not_granted';
    end if;

    if not exists (select 1
                     from group_members m
                     join access_groups g on g.id = m.group_id
                     join group_keys gk on gk.group_id = g.id
                     join group_devices gd on gd.group_id = g.id
                    where m.user_id = p_user and gk.key_id = p_key
                      and gd.device_id = p_device
                      and g.use_credentials and g.access_devices
                      and g.remote_session)
    then
        return 'not_granted_together';
    end if;

    return 'ok';
end;
$$;

comment on function segura_grant_check(bigint, bigint, bigint) is
    'ok, or the first failing condition as a reason code (see 010_grant_check.sql)';

-- The Remote Access report of a key for a user: every device associated
-- with the key, main device first, with the grant result for each.  An
-- unknown key gives no rows.
create function segura_key_devices_for(p_user bigint, p_key bigint)
returns table (device_id bigint, is_main boolean, reason text)
language sql
stable
as $$
    select kd.device_id, kd.is_main,
           segura_grant_check(p_user, p_key, kd.device_id)
      from key_devices kd
     where kd.key_id = p_key
     order by kd.is_main desc, kd.device_id;
$$;

comment on function segura_key_devices_for(bigint, bigint) is
    'per associated device of a key: device_id, is_main, grant reason for a user';
