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
    mkdir -p "$real"
    ln -s "$real" "$pgdir"
fi
[ -L "$pgdir" ] && pgdir=$(readlink "$pgdir")

stop_pg() { "$top/t/bin/pg-cluster" stop "$pgdir" >/dev/null 2>&1 || true; }

sock=$("$top/t/bin/pg-cluster" start "$pgdir" | tail -n 1)
trap stop_pg EXIT

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

user=""
[ "$(id -u)" -eq 0 ] && user="user root root;"

sed -e "s|@MODULE@|$module|g" -e "s|@RUN@|$run|g" -e "s|@PORT@|$port|g" \
    -e "s|@PGSOCK@|$sock|g" -e "s|@HTML@|$top/html|g" -e "s|@USER@|$user|g" \
    "$top/tools/nginx.conf.in" > "$run/nginx/nginx.conf"

"$nginx" -p "$run/nginx/" -c "$run/nginx/nginx.conf" -e "$run/nginx/error.log" -t -q

echo
echo "segura: http://127.0.0.1:$port/  (log in as admin; Ctrl-C stops)"
[ -f "$run/admin-password" ] && echo "admin password: .run/admin-password"
echo

"$nginx" -p "$run/nginx/" -c "$run/nginx/nginx.conf" -e "$run/nginx/error.log" &
ngx=$!

# Ctrl-C: stop nginx gracefully, then PostgreSQL (EXIT trap)
trap 'kill -QUIT $ngx 2>/dev/null || true' INT TERM
while kill -0 $ngx 2>/dev/null; do
    wait $ngx || true
done
echo "segura: stopped"
