#!/usr/bin/env bash
# benches/compare/all.sh: the full table of BENCHMARKS.md in one command: eight invocations of
# run.sh in a row (local, local delta, ssh, ssh delta, ssh 4 GiB, netns delta, netns 1 GiB),
# each under about 10 minutes so a shared machine gets a breather between them, and their
# tables concatenated into OUT (default: all-<date>.md in the current directory).
#
# Environment: XSYNC_BIN / XSYNC_REV / WORK / INSTALL are passed on to run.sh; RUNS (default 3)
# applies to every invocation but the netns 1 GiB one (NETNS_D_RUNS, default 2: one 1 GiB push
# at 100 Mbit/s takes about 95 s, so 2 tools x 3 runs would not fit in 10 minutes).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$PWD/all-$(date -u +%Y%m%dT%H%M%SZ).md}
RUNS=${RUNS:-3}
PAUSE=${PAUSE:-20}
if [[ -z ${XSYNC_BIN:-} ]]; then
    # One build for all eight, so they measure the same binary.
    (cd "$HERE/../.." && cargo build --release >&2)
    XSYNC_BIN=${CARGO_TARGET_DIR:-$HERE/../../target}/release/xsync
    export XSYNC_REV=${XSYNC_REV:-$(git -C "$HERE/../.." describe --always --dirty)}
fi
export XSYNC_BIN
: >"$OUT"
step() { # step NAME VAR=VALUE... -- ARGS...
    local name=$1 part
    shift
    part=$(mktemp)
    printf 'all.sh: %s (load %s)\n' "$name" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2
    env OUT="$part" "$@" >/dev/null || printf 'all.sh: %s failed (exit %s)\n' "$name" "$?" >&2
    { printf '### %s\n\n' "$name"; cat "$part"; printf '\n'; } >>"$OUT"
    rm -f "$part"
    sleep "$PAUSE"
}
step "local" RUNS="$RUNS" TRANSPORT=local "$HERE/run.sh"
step "local, delta and -z" RUNS="$RUNS" TRANSPORT=local "$HERE/run.sh" --delta --only=e-delta-edit,f-delta-insert,g-text-z
step "ssh" RUNS="$RUNS" TRANSPORT=ssh "$HERE/run.sh"
step "ssh, delta and -z" RUNS="$RUNS" TRANSPORT=ssh "$HERE/run.sh" --only=e-delta-edit,f-delta-insert,g-text-z,g-text,g-text-noz
step "pull" RUNS="$RUNS" TRANSPORT=pull "$HERE/run.sh"
step "ssh, 4 GiB" RUNS="$RUNS" TRANSPORT=ssh "$HERE/run.sh" --only=h-big4g
step "netns, delta and -z" RUNS="$RUNS" TRANSPORT=netns "$HERE/run.sh" --only=e-delta-edit,f-delta-insert,g-text-z,g-text,g-text-noz
step "netns, 1 GiB" RUNS="${NETNS_D_RUNS:-2}" TRANSPORT=netns "$HERE/run.sh" --only=d-bigfile
printf 'all.sh: tables in %s\n' "$OUT" >&2
