#!/usr/bin/env bash
# spec/bench/callgrind-decode.sh - instructions per decoded cluster stream entry
# (sl_cl_decode + sl_cl_entry_free, malloc and free included), counted by callgrind: the
# receiving node's decode cost per cross-node delivery, deterministic and without the network.
#
#   bash spec/bench/callgrind-decode.sh [N]      (default N 100000; needs valgrind, `make all`)
#
# Builds spec/bench/decode/cluster-decode.c with the release CFLAGS against build/libsluice.a,
# runs it under callgrind with 0 and N entries and prints (Ir(N) - Ir(0)) / N: for the two
# shapes alternating, each alone, and the same for the cJSON decoder the one-pass scan
# replaced (compiled into the driver from spec/unit/cluster_codec_ref.h, same flags).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
OUT=build/bench
mkdir -p "$OUT"
CFLAGS_REL=$(make -s --no-print-directory --eval='sl-print-cflags: ; @echo $(CFLAGS)' sl-print-cflags)
LIBS=$(make -s --no-print-directory --eval='sl-print-ldlibs: ; @echo $(LDLIBS)' sl-print-ldlibs)
# shellcheck disable=SC2086
cc $CFLAGS_REL -Ispec/unit -o "$OUT/cluster-decode" spec/bench/decode/cluster-decode.c build/libsluice.a $LIBS
ir() {
  valgrind --tool=callgrind --callgrind-out-file=/dev/null "$OUT/cluster-decode" "$@" 2>&1 >/dev/null |
    sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
for dec in new ref; do
  for shape in both sluice adapter; do
    base=$(ir 0 "$shape" "$dec")
    full=$(ir "$N" "$shape" "$dec")
    echo "cluster-decode ($dec, $shape): Ir(0) $base, Ir($N) $full: $(((full - base) / N)) instructions per entry"
  done
done
