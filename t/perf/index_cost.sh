#!/bin/sh
# Instructions per output byte of the search's scanner and index
# (t/perf/index_cost.c under callgrind, -O2 as the module is built) for
# two streams: 16 MiB of random base64 and `ls -lR /usr` (the first 16 MiB).
#
#   t/perf/index_cost.sh        (from the top of the tree)
set -e
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cc -std=gnu99 -O2 -g -Ingx_segura_module -o "$dir/cost" t/perf/index_cost.c \
    ngx_segura_module/ngx_segura_index.c ngx_segura_module/ngx_segura_words.c \
    ngx_segura_module/ngx_segura_vault.c -lcrypto
head -c 12582912 /dev/urandom | base64 > "$dir/base64"
ls -lR /usr 2>/dev/null | head -c 16777216 > "$dir/ls" || true
: > "$dir/empty"
for s in empty base64 ls; do
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$s" \
        "$dir/cost" < "$dir/$s" > "$dir/out.$s" 2>/dev/null
    ir=$(sed -n 's/^totals: //p' "$dir/cg.$s")
    echo "$s $ir $(cat "$dir/out.$s")"
done | awk '
    $1 == "empty" { base = $2; next }
    { split($3, a, /[:,]/); bytes = a[2];
      printf "%s: %.2f instructions per byte %s\n", $1, ($2 - base) / bytes, $3 }'
