#!/usr/bin/env bash
# make run: a private PostgreSQL cluster and nginx with the module, in the
# foreground on http://127.0.0.1:$PORT.  Ctrl-C (SIGINT), SIGTERM or SIGHUP
# stops nginx, the demo sshd and PostgreSQL; the next run keeps the data.
#
# Environment: RUN_DIR (where everything is kept, default .run/ of the
# checkout; another RUN_DIR, PORT and DEMO_SSH_PORT make a second instance
# that shares nothing with the first), PORT (8080), DEMO (1),
# DEMO_SSH_PORT (2222), SEGURA_ADMIN_PASSWORD (first start only),
# NGINX_BIN, MODULE (set by the Makefile).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
run=$(realpath -m -- "${RUN_DIR:-$top/.run}")
port=${PORT:-8080}
demo_on=${DEMO:-1}
sshd_port=${DEMO_SSH_PORT:-2222}
nginx=${NGINX_BIN:-/usr/sbin/nginx}
module=${MODULE:-$top/build/ngx_http_segura_module.so}

die() { echo "run.sh: $*" >&2; exit 1; }

# a path as a person reads it: relative to the checkout when inside it
show() { case $1 in "$top"/*) echo "${1#"$top"/}" ;; *) echo "$1" ;; esac; }

# the run directory goes into nginx.conf and sed expressions as is
case $run in
*[[:space:]\'\"\\\|\;\{\}\$\#]*) die "RUN_DIR=$run: no spaces, quotes or ;|{}\$# please" ;;
esac
case $port$sshd_port in
*[!0-9]*) die "PORT and DEMO_SSH_PORT must be port numbers" ;;
esac

# --- stopping -------------------------------------------------------------
# Everything started here is stopped by the EXIT trap, whatever the exit:
# the end of nginx, an error, or a signal (each signal trap exits, which
# runs the EXIT trap).  nginx and sshd are also started with a parent-death
# signal, so that they go even when this script is killed outright
# (SIGKILL); PostgreSQL then keeps running and the next start reuses it.
ngx_pid=""
sshd_pid=""
pg_up=0
pgdir="$run/pg"

# stop_child PID SIGNAL SECONDS: send SIGNAL to the child PID, wait for it
# to exit for up to SECONDS, then TERM, then KILL
stop_child() {
    local pid=$1 sig=$2 secs=$3 deadline
    for sig in "$sig" TERM KILL; do
        kill -0 "$pid" 2>/dev/null || break
        kill -"$sig" "$pid" 2>/dev/null || true
        deadline=$((SECONDS + secs))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        secs=5
    done
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    # nothing may cut the stopping short: not a second Ctrl-C, nor a
    # terminal or pipe gone away (a failing echo)
    set +e
    trap '' INT TERM HUP QUIT PIPE
    [ "$rc" -ge 128 ] && echo "segura: stopping"
    if [ -n "$ngx_pid" ]; then
        # graceful: a terminal still open is closed after
        # worker_shutdown_timeout (nginx.conf.in)
        stop_child "$ngx_pid" QUIT 15
        ngx_pid=""
    fi
    if [ -n "$sshd_pid" ]; then
        stop_child "$sshd_pid" TERM 10
        sshd_pid=""
    fi
    if [ "$pg_up" = 1 ]; then
        "$top/t/bin/pg-cluster" stop "$pgdir" >/dev/null 2>&1 || true
    fi
    [ "$rc" = 0 ] || [ "$rc" -ge 128 ] || echo "segura: stopped (exit $rc)" >&2
    [ "$rc" -ge 128 ] && echo "segura: stopped"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 131' QUIT

# the prefix of a long-running child (a plain command, so that $! is the
# child's own pid): in a session of its own, so that the terminal's Ctrl-C
# reaches this script only, which stops nginx gracefully; and with SIGTERM
# as its parent-death signal
child=()
command -v setsid >/dev/null && child=(setsid)
if setpriv --pdeathsig TERM -- true 2>/dev/null; then
    child+=(setpriv --pdeathsig TERM --)
fi

# a process left by an earlier run of this directory that was killed
# outright: PIDFILE, and a string its command line must hold
stop_stale() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    case $pid in ''|*[!0-9]*) rm -f "$1"; return 0 ;; esac
    if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2"; then
        echo "stopping $(show "$1") ($pid) left by an earlier run"
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 10))
        while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

# waits until the daemon $1 (a pid) writes its pid file $2, which it does
# once it listens, for 30 s at most; when it exits first, prints the end of
# its log $3 (what it wrote after byte $4) and returns 1; 2 on the deadline
await_pidfile() {
    local deadline=$((SECONDS + 30))
    until [ -s "$2" ]; do
        if ! kill -0 "$1" 2>/dev/null; then
            wait "$1" 2>/dev/null || true
            tail -c +"$(($4 + 1))" "$3" | tail -n 5 >&2
            return 1
        fi
        [ "$SECONDS" -lt "$deadline" ] || return 2
        sleep 0.1
    done
}

umask 077
mkdir -p "$run/nginx"
chmod 0700 "$run"

# the web UI's xterm.js: make copies it from npm to html/vendor/
if [ ! -f "$top/html/vendor/xterm/xterm.js" ]; then
    die "html/vendor/xterm/ is missing: run make (or make ui) first"
fi

# --- PostgreSQL ---------------------------------------------------------------
# PostgreSQL refuses to run as root: as root it runs as "postgres", which
# must reach its data directory; the run directory is private, so the
# cluster lives in a directory of its own under /var/tmp, named after the
# run directory and linked from <run>/pg.
hash_of() { printf '%s' "$1" | sha256sum | cut -c1-12; }
if [ "$(id -u)" -eq 0 ] && [ ! -e "$pgdir" ]; then
    real="/var/tmp/segura-pg-$(hash_of "$run")"
    old=""
    # before RUN_DIR, the name came from the checkout
    [ "$run" = "$top/.run" ] && old="/var/tmp/segura-pg-$(hash_of "$top")"
    for d in "$real" $old; do
        if [ -d "$d" ]; then
            # the run directory was removed: its master key too, so the
            # old data goes
            "$top/t/bin/pg-cluster" stop "$d" >/dev/null 2>&1 || true
            rm -rf "$d"
        fi
    done
    mkdir -p "$real"
    ln -s "$real" "$pgdir"
fi
[ -L "$pgdir" ] && pgdir=$(readlink "$pgdir")

pg_up=1
sock=$("$top/t/bin/pg-cluster" start "$pgdir" | tail -n 1)

conninfo="host=$sock dbname=segura user=segura"
"$top/tools/segura-migrate" "$conninfo"

if [ ! -s "$run/master.key" ]; then
    head -c 32 /dev/urandom > "$run/master.key"
    chmod 0600 "$run/master.key"
    echo "created the master key $(show "$run/master.key")"
fi

psql_q() { psql -X -q -t -A -v ON_ERROR_STOP=1 "$conninfo" "$@"; }

if [ "$(psql_q -c "select count(*) from users where username = 'admin'")" = 0 ]; then
    if [ -n "${SEGURA_ADMIN_PASSWORD:-}" ]; then
        password=$SEGURA_ADMIN_PASSWORD
        rm -f "$run/admin-password"
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
        echo "  its password: $password  (kept in $(show "$run/admin-password"))"
    fi
fi

# --- the demo device ------------------------------------------------------------
# DEMO=1: a loopback OpenSSH server as a demo device, with a demo key
# registered (sealed by the vault's own code), associated and granted to
# the group "demo" whose member is admin, so a terminal opens at once.
if [ "$demo_on" = 1 ]; then
    demo="$run/demo"
    mkdir -p "$demo"
    chmod 0755 "$run" "$demo"
    [ "$(id -u)" -eq 0 ] && mkdir -p /run/sshd && chmod 0755 /run/sshd
    for t in ed25519 rsa; do
        [ -f "$demo/host_$t" ] || ssh-keygen -q -t "$t" -N '' -C '' -f "$demo/host_$t"
    done
    [ -f "$demo/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C segura-demo -f "$demo/id_ed25519"
    cp "$demo/id_ed25519.pub" "$demo/authorized_keys"
    # the demo shell starts in an empty home of its own, not in the
    # invoking user's (whose ~/.bashrc may be slow or write history)
    mkdir -p "$demo/home"
    chmod 0644 "$demo/authorized_keys"
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
SetEnv HOME=$demo/home
CONF
    stop_stale "$demo/sshd.pid" "$demo/sshd_config"
    logsize=$(stat -c %s "$demo/sshd.log" 2>/dev/null || echo 0)
    "${child[@]}" /usr/sbin/sshd -D -e -f "$demo/sshd_config" 2>>"$demo/sshd.log" &
    sshd_pid=$!
    await_pidfile "$sshd_pid" "$demo/sshd.pid" "$demo/sshd.log" "$logsize" || case $? in
        1) sshd_pid=""
           die "the demo sshd did not start on 127.0.0.1:$sshd_port (DEMO_SSH_PORT), see $(show "$demo/sshd.log")" ;;
        *) die "the demo sshd did not start within 30 s" ;;
    esac

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

# --- nginx ----------------------------------------------------------------------
user=""
[ "$(id -u)" -eq 0 ] && user="user root root;"

sed -e "s|@MODULE@|$module|g" -e "s|@RUN@|$run|g" -e "s|@PORT@|$port|g" \
    -e "s|@PGSOCK@|$sock|g" -e "s|@HTML@|$top/html|g" -e "s|@TOP@|$top|g" -e "s|@USER@|$user|g" \
    "$top/tools/nginx.conf.in" > "$run/nginx/nginx.conf"

ngx_args=(-p "$run/nginx/" -c "$run/nginx/nginx.conf" -e "$run/nginx/error.log")
"$nginx" "${ngx_args[@]}" -t -q

stop_stale "$run/nginx/nginx.pid" "$run/nginx/nginx.conf"
logsize=$(stat -c %s "$run/nginx/error.log" 2>/dev/null || echo 0)
"${child[@]}" "$nginx" "${ngx_args[@]}" &
ngx_pid=$!
await_pidfile "$ngx_pid" "$run/nginx/nginx.pid" "$run/nginx/error.log" "$logsize" || case $? in
    1) ngx_pid=""
       die "nginx did not start on 127.0.0.1:$port (PORT), see $(show "$run/nginx/error.log")" ;;
    *) die "nginx did not start within 30 s" ;;
esac

echo
echo "segura: http://127.0.0.1:$port/  (Ctrl-C stops)"
if [ -f "$run/admin-password" ]; then
    echo "  log in as admin, password in $(show "$run/admin-password")"
else
    echo "  log in as admin, with the SEGURA_ADMIN_PASSWORD of the first start"
fi
if [ "$demo_on" = 1 ]; then
    echo "  demo: SSH Keys > demo-key > Actions > Start session with a key > Start session"
fi
echo

# until nginx ends, or a signal: its trap exits, and the EXIT trap stops
# nginx, sshd and PostgreSQL
rc=0
wait "$ngx_pid" || rc=$?
ngx_pid=""
echo "segura: nginx exited (status $rc), see $(show "$run/nginx/error.log")" >&2
exit 1
