#!/usr/bin/env bash
# make run: a private PostgreSQL cluster and nginx with the module, in the
# foreground on http://127.0.0.1:$PORT.  Ctrl-C stops both; the next run
# keeps the data (.run/).
#
# Environment: PORT (8080), SEGURA_ADMIN_PASSWORD (first start only),
# NGINX_BIN, MODULE (set by the Makefile).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
run="$top/.run"
port=${PORT:-8080}
nginx=${NGINX_BIN:-/usr/sbin/nginx}
module=${MODULE:-$top/build/ngx_http_segura_module.so}

umask 077
mkdir -p "$run/nginx"
chmod 0700 "$run"

# PostgreSQL refuses to run as root: as root it runs as "postgres", which
# must reach its data directory; .run/ is private, so the cluster lives in
# a directory of its own under /var/tmp, linked from .run/pg.
pgdir="$run/pg"
if [ "$(id -u)" -eq 0 ] && [ ! -e "$pgdir" ]; then
    real="/var/tmp/segura-pg-$(printf '%s' "$top" | sha256sum | cut -c1-12)"
    if [ -d "$real" ]; then
        # .run/ was removed: its master key too, so the old data goes
        "$top/t/bin/pg-cluster" stop "$real" >/dev/null 2>&1 || true
        rm -rf "$real"
    fi
    mkdir -p "$real"
    ln -s "$real" "$pgdir"
fi
[ -L "$pgdir" ] && pgdir=$(readlink "$pgdir")

stop_pg() { "$top/t/bin/pg-cluster" stop "$pgdir" >/dev/null 2>&1 || true; }

sock=$("$top/t/bin/pg-cluster" start "$pgdir" | tail -n 1)
trap stop_pg EXIT

# the web UI's xterm.js: make copies it from npm to html/vendor/
if [ ! -f "$top/html/vendor/xterm/xterm.js" ]; then
    echo "html/vendor/xterm/ is missing: run make (or make ui) first" >&2
    exit 1
fi

conninfo="host=$sock dbname=segura user=segura"
"$top/tools/segura-migrate" "$conninfo"

if [ ! -s "$run/master.key" ]; then
    head -c 32 /dev/urandom > "$run/master.key"
    chmod 0600 "$run/master.key"
    echo "created the master key $run/master.key"
fi

psql_q() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$conninfo" "$@"; }

if [ "$(psql_q -c "select count(*) from users where username = 'admin'")" = 0 ]; then
    if [ -n "${SEGURA_ADMIN_PASSWORD:-}" ]; then
        password=$SEGURA_ADMIN_PASSWORD
    else
        password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
        printf '%s\n' "$password" > "$run/admin-password"
        chmod 0600 "$run/admin-password"
    fi
    hash=$(printf '%s\n' "$password" | "$top/build/segura-passwd")
    psql_q -v hash="$hash" <<'SQL'
insert into users (username, display_name, password_hash, is_admin)
values ('admin', 'Administrator', :'hash', true);
SQL
    echo "created the user admin"
    if [ -z "${SEGURA_ADMIN_PASSWORD:-}" ]; then
        echo "  its password: $password  (kept in .run/admin-password)"
    fi
fi

# DEMO=1: a loopback OpenSSH server as a demo device, with a demo key
# registered (sealed by the vault's own code), associated and granted to
# the group "demo" whose member is admin, so a terminal opens at once.
sshd_pid=""
stop_all() {
    [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
    stop_pg
}
trap stop_all EXIT

if [ "${DEMO:-1}" = 1 ]; then
    demo="$run/demo"
    mkdir -p "$demo"
    chmod 0755 "$run" "$demo"
    [ "$(id -u)" -eq 0 ] && mkdir -p /run/sshd && chmod 0755 /run/sshd
    for t in ed25519 rsa; do
        [ -f "$demo/host_$t" ] || ssh-keygen -q -t $t -N '' -C '' -f "$demo/host_$t"
    done
    [ -f "$demo/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C segura-demo -f "$demo/id_ed25519"
    cp "$demo/id_ed25519.pub" "$demo/authorized_keys"
    chmod 0644 "$demo/authorized_keys"
    sshd_port=${DEMO_SSH_PORT:-2222}
    cat > "$demo/sshd_config" <<CONF
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $demo/host_ed25519
HostKey $demo/host_rsa
PidFile $demo/sshd.pid
AuthorizedKeysFile $demo/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PrintMotd no
CONF
    /usr/sbin/sshd -D -e -f "$demo/sshd_config" 2>>"$demo/sshd.log" &
    sshd_pid=$!

    login=$(id -un)
    if [ "$(psql_q -c "select count(*) from devices where name = 'demo-sshd'")" = 0 ]; then
        psql_q -v port="$sshd_port" <<'SQL'
insert into devices (name, description, address, port, tags)
values ('demo-sshd', 'OpenSSH on loopback, started by make run', '127.0.0.1',
        :port, '{demo}');
SQL
    else
        psql_q -c "update devices set port = $sshd_port where name = 'demo-sshd'"
    fi

    if [ "$(psql_q -c "select count(*) from ssh_keys where name = 'demo-key'")" = 0 ]; then
        id=$(psql_q -c "select nextval(pg_get_serial_sequence('ssh_keys', 'id'))")
        blob=$("$top/build/segura-vault" seal "$run/master.key" 1 \
               "ssh_keys/$id/private_key" < "$demo/id_ed25519")
        read -r type b64 _ < "$demo/id_ed25519.pub"
        fp=$(ssh-keygen -lf "$demo/id_ed25519.pub" | awk '{print $2}')
        psql_q -v id="$id" -v blob="$blob" -v pub="$type $b64" -v fp="$fp" \
               -v login="$login" <<'SQL'
begin;
insert into ssh_keys (id, name, status, tags, owner, username, key_type,
                      bits, public_key, fingerprint, private_key_enc)
overriding system value
values (:id, 'demo-key', 'active', '{demo}', :'login', :'login',
        'ssh-ed25519', 256, :'pub', :'fp', :'blob'::bytea);
insert into key_devices (key_id, device_id, is_main)
select :id, id, true from devices where name = 'demo-sshd';
insert into access_groups (name, use_credentials, access_devices,
                           remote_session)
values ('demo', true, true, true) on conflict (name) do nothing;
insert into group_members (group_id, user_id)
select g.id, u.id from access_groups g, users u
where g.name = 'demo' and u.username = 'admin' on conflict do nothing;
insert into group_keys (group_id, key_id)
select g.id, :id from access_groups g where g.name = 'demo';
insert into group_devices (group_id, device_id)
select g.id, d.id from access_groups g, devices d
where g.name = 'demo' and d.name = 'demo-sshd' on conflict do nothing;
commit;
SQL
        echo "registered the demo device demo-sshd (127.0.0.1:$sshd_port) and key demo-key"
    fi
fi

user=""
[ "$(id -u)" -eq 0 ] && user="user root root;"

sed -e "s|@MODULE@|$module|g" -e "s|@RUN@|$run|g" -e "s|@PORT@|$port|g" \
    -e "s|@PGSOCK@|$sock|g" -e "s|@HTML@|$top/html|g" -e "s|@USER@|$user|g" \
    "$top/tools/nginx.conf.in" > "$run/nginx/nginx.conf"

"$nginx" -p "$run/nginx/" -c "$run/nginx/nginx.conf" -e "$run/nginx/error.log" -t -q

echo
echo "segura: http://127.0.0.1:$port/  (log in as admin; Ctrl-C stops)"
[ -f "$run/admin-password" ] && echo "admin password: .run/admin-password"
[ "${DEMO:-1}" = 1 ] && echo "demo: SSH Keys > demo-key > Start session with a key"
echo

"$nginx" -p "$run/nginx/" -c "$run/nginx/nginx.conf" -e "$run/nginx/error.log" &
ngx=$!

# Ctrl-C: stop nginx gracefully, then PostgreSQL (EXIT trap)
trap 'kill -QUIT $ngx 2>/dev/null || true' INT TERM
while kill -0 $ngx 2>/dev/null; do
    wait $ngx || true
done
echo "segura: stopped"
