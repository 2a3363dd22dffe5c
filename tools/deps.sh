#!/usr/bin/env bash
# Installs the Debian 12 packages the project needs, when missing.
# As root: apt-get update + apt-get install.  Otherwise: prints the exact
# command and fails, so nothing half-works.
#
#   tools/deps.sh [build|ui|test|run|bench|fuzz|deb]...
set -euo pipefail

build=(build-essential pkg-config nginx nginx-dev libssh-dev libpq-dev
       libssl-dev libjansson-dev libargon2-dev libzstd-dev)
run=(postgresql postgresql-client openssh-server openssh-client)
test=(libcmocka-dev libmojolicious-perl libdbd-pg-perl libio-socket-ssl-perl
      perl procps psmisc iproute2 nodejs chromium firefox-esr valgrind
      dpkg-dev fakeroot lintian openssl asciinema dropbear-bin)
fuzz=(clang libclang-rt-dev)
ui=(nodejs)
bench=(linux-perf python3 strace)
deb=(dpkg-dev fakeroot lintian)

want=("${build[@]}")
for what in "${@:-build}"; do
    case "$what" in
        build) ;;
        ui)    want+=("${ui[@]}") ;;
        run)   want+=("${run[@]}") ;;
        test)  want+=("${run[@]}" "${test[@]}") ;;
        fuzz)  want+=("${fuzz[@]}") ;;
        deb)   want+=("${deb[@]}") ;;
        bench) want+=("${run[@]}" "${test[@]}" "${bench[@]}") ;;
        *) echo "deps.sh: unknown set '$what'" >&2; exit 2 ;;
    esac
done

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null \
            | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "Missing Debian packages: ${missing[*]}" >&2
    echo "Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
