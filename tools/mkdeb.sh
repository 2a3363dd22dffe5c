#!/usr/bin/env bash
# Builds libnginx-mod-http-segura_<version>_<arch>.deb the way Debian's
# libnginx-mod-* packages are laid out, from what "make build ui" made:
#
#   /usr/lib/nginx/modules/ngx_http_segura_module.so
#   /usr/share/nginx/modules-available/mod-http-segura.conf   (load_module)
#   /etc/nginx/modules-enabled/50-mod-http-segura.conf        (postinst link)
#   /usr/share/segura/html/        the web UI, with its vendored xterm.js
#   /usr/share/segura/sql/         the migrations
#   /usr/share/segura/bin/segura-migrate, /usr/sbin/segura-migrate (link)
#   /usr/sbin/segura-passwd        argon2id hash of a password on stdin
#   /usr/share/segura/ui-headers.conf
#   /usr/share/doc/libnginx-mod-http-segura/  README, docs, example site
#
# Depends on the nginx-abi-* that the nginx it was built against provides,
# so that apt refuses it on an nginx of another ABI.
#
#   tools/mkdeb.sh MODULE OUTDIR
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
module=${1:?usage: mkdeb.sh MODULE OUTDIR}
out=${2:?usage: mkdeb.sh MODULE OUTDIR}

pkg=libnginx-mod-http-segura
version=$(sed -n 's/^#define NGX_SEGURA_VERSION *"\(.*\)"/\1/p' \
          "$top/ngx_segura_module/ngx_segura.h")
[ -n "$version" ] || { echo "mkdeb: no NGX_SEGURA_VERSION" >&2; exit 1; }
debver="$version-1"
arch=$(dpkg --print-architecture)

abi=$(dpkg-query -W -f='${Provides}\n' nginx nginx-core nginx-common 2>/dev/null \
      | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p' | head -n 1)
[ -n "$abi" ] || { echo "mkdeb: no installed nginx provides nginx-abi-*" >&2; exit 1; }

for f in "$module" "$top/build/segura-passwd" "$top/html/vendor/xterm/.installed"; do
    [ -e "$f" ] || { echo "mkdeb: $f is missing (make build ui)" >&2; exit 1; }
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/segura-deb-XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/root"
doc="$root/usr/share/doc/$pkg"

install -d -m 0755 "$root/DEBIAN" "$root/usr/lib/nginx/modules" \
    "$root/usr/share/nginx/modules-available" "$root/usr/share/segura/bin" \
    "$root/usr/share/segura/sql" "$root/usr/sbin" "$doc/docs" "$doc/examples"

install -m 0644 "$module" "$root/usr/lib/nginx/modules/ngx_http_segura_module.so"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/usr/lib/nginx/modules/ngx_http_segura_module.so"
echo 'load_module modules/ngx_http_segura_module.so;' \
    > "$root/usr/share/nginx/modules-available/mod-http-segura.conf"

# the UI: html/ as served, without the npm manifests
cp -r "$top/html" "$root/usr/share/segura/html"
rm -f "$root/usr/share/segura/html/package.json" \
      "$root/usr/share/segura/html/package-lock.json" \
      "$root/usr/share/segura/html/vendor/xterm/.installed"
install -m 0644 "$top/tools/ui-headers.conf" "$root/usr/share/segura/ui-headers.conf"
install -m 0644 "$top"/sql/*.sql "$root/usr/share/segura/sql/"
install -m 0755 "$top/tools/segura-migrate" "$root/usr/share/segura/bin/segura-migrate"
ln -s ../share/segura/bin/segura-migrate "$root/usr/sbin/segura-migrate"
install -m 0755 "$top/build/segura-passwd" "$root/usr/sbin/segura-passwd"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$root/usr/sbin/segura-passwd"

install -m 0644 "$top/README.md" "$doc/README.md"
install -m 0644 "$top"/docs/*.md "$doc/docs/"
cat > "$doc/examples/segura-site.conf" <<'EOF'
# An example site: copy to /etc/nginx/sites-available/, adjust, enable.
# The module is loaded by /etc/nginx/modules-enabled/50-mod-http-segura.conf;
# "thread_pool segura threads=16;" goes in the main context (nginx.conf).
#
# Create the schema:  segura-migrate "host=/run/postgresql dbname=segura user=segura"
# and the master key: head -c 32 /dev/urandom > /etc/segura/master.key
#                     chmod 600 /etc/segura/master.key

segura_database    "host=/run/postgresql dbname=segura user=segura";
segura_master_key  /etc/segura/master.key;

server {
    listen 443 ssl;
    server_name segura.example.com;
    # ssl_certificate     /etc/ssl/certs/segura.pem;
    # ssl_certificate_key /etc/ssl/private/segura.key;

    location = /session { segura_session; }
    location /api/      { segura_api; }
    location /          { root /usr/share/segura/html;
                          include /usr/share/segura/ui-headers.conf; }
}
EOF

cat > "$doc/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ngx_segura_module
Source: https://github.com/segura/ngx_segura_module

Files: *
Copyright: 2026 ngx_segura_module authors
License: BSD-2-clause

Files: usr/share/segura/html/vendor/xterm/*
Copyright: 2017-2026 The xterm.js authors
License: MIT
 See usr/share/segura/html/vendor/xterm/LICENSE-*.

Files: usr/share/segura/html/vendor/asciinema-player/*
Copyright: 2011-2026 Marcin Kulik and the asciinema-player authors
License: Apache-2.0
 See usr/share/segura/html/vendor/asciinema-player/LICENSE.

License: BSD-2-clause
 Redistribution and use in source and binary forms, with or without
 modification, are permitted provided that the following conditions are met:
 1. Redistributions of source code must retain the above copyright notice,
    this list of conditions and the following disclaimer.
 2. Redistributions in binary form must reproduce the above copyright notice,
    this list of conditions and the following disclaimer in the documentation
    and/or other materials provided with the distribution.
 THIS SOFTWARE IS PROVIDED BY THE AUTHORS ``AS IS'' AND ANY EXPRESS OR
 IMPLIED WARRANTIES ARE DISCLAIMED.

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software, to deal in the Software without restriction, subject to
 the conditions in the LICENSE files named above.
EOF

{
    echo "$pkg ($debver) unstable; urgency=medium"
    echo
    echo "  * Package of ngx_segura_module $version."
    echo
    echo " -- ngx_segura_module authors <segura@example.com>  $(LC_ALL=C date -R -u -d @"${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}")"
} | gzip -9n > "$doc/changelog.Debian.gz"

# the scripts honour DPKG_ROOT (dpkg --instdir with
# --force-script-chrootless, as the package test installs it)
cat > "$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
# as Debian's libnginx-mod-* do: enable the module on the first install
# (an upgrade leaves the admin's choice alone)
enabled="$DPKG_ROOT/etc/nginx/modules-enabled"
if [ "$1" = "configure" ] && [ -z "$2" ] && [ -d "$enabled" ] \
   && [ ! -e "$enabled/50-mod-http-segura.conf" ]; then
    ln -s /usr/share/nginx/modules-available/mod-http-segura.conf \
        "$enabled/50-mod-http-segura.conf"
fi
exit 0
EOF
cat > "$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = "remove" ] || [ "$1" = "purge" ]; then
    rm -f "$DPKG_ROOT/etc/nginx/modules-enabled/50-mod-http-segura.conf"
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/postrm"

# shared libraries: the packages that hold what the binaries link
# directly (their NEEDED entries, resolved as the loader would)
deps=$(for b in "$root/usr/lib/nginx/modules/ngx_http_segura_module.so" \
                "$root/usr/sbin/segura-passwd"; do
           needed=$(readelf -d "$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
           ldd "$b" | awk -v n=" $(echo $needed) " \
               '/=> \// && index(n, " " $1 " ") { print $3 }'
       done | sort -u | while read -r lib; do
           dpkg -S "$(readlink -f "$lib")" 2>/dev/null \
               || dpkg -S "$lib" 2>/dev/null || true
       done | cut -d: -f1 | sort -u | paste -sd, | sed 's/,/, /g')

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat > "$root/DEBIAN/control" <<EOF
Package: $pkg
Version: $debver
Architecture: $arch
Maintainer: ngx_segura_module authors <segura@example.com>
Installed-Size: $size
Depends: $abi, $deps, postgresql-client
Recommends: nginx
Section: httpd
Priority: optional
Homepage: https://github.com/segura/ngx_segura_module
Description: privileged-access web SSH proxy module for nginx
 ngx_segura_module turns nginx into a privileged-access web SSH proxy:
 administrators register SSH keys (stored encrypted) and the devices each
 key may reach; members of access groups open a browser terminal that
 nginx relays to the device over SSH, with every session audited in
 PostgreSQL.
 .
 This package holds the dynamic module, its web UI, the schema migrations
 and their tool, documentation and an example site.
EOF

(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' \
     | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

find "$root" -type d -exec chmod 0755 {} +
find "$root/usr/share" -type f -exec chmod 0644 {} +
chmod 0755 "$root/usr/share/segura/bin/segura-migrate"

mkdir -p "$out"
deb="$out/${pkg}_${debver}_${arch}.deb"
fakeroot dpkg-deb --build -Zxz --root-owner-group "$root" "$deb" >/dev/null
echo "$deb"
