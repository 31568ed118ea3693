#!/usr/bin/env bash
# benches/compare/long-link.sh: xsync against rsync (and syq, if installed) over a long link.
#
# Usage: benches/compare/long-link.sh [--quick]
#
# A private sshd on 127.0.0.1 with throwaway keys, reached through benches/compare/delay-relay
# as ssh's ProxyCommand, which holds every byte DELAY ms each way (this kernel has no netem):
# DELAY=25 and 50 give round trips of about 50 and 100 ms, with no bandwidth limit. Rows, each
# tool in the same run, one after the other:
#   big      initial push of one 1 GiB file (incompressible)
#   small    initial push of 30,000 files of 0-8 KiB in 300 directories
#   noop     the same push again, nothing changed
#   kernel-noop    `-a --delete` of the Linux kernel tree onto an identical copy (made with
#                  `cp -a`, untimed): the unchanged-tree re-sync
#   kernel-delete  the same onto the original copy after the tree changed (benches/compare/
#                  gen.py mutate: 100 files modified, 50 added, 50 removed): the --delete update
# Every row's result is checked (`diff -rq`) before its time counts. The login alone (`ssh
# host true` through the relay) is timed too: the no-op target is login + 2 RTT + 0.2 s.
# Peak RSS of both sides comes from GNU time (the server's through --xsync-path/--rsync-path).
#
# Environment: XSYNC_BIN (default target/release/xsync), WORK (default /dev/shm/xsync-long),
# DELAYS (default "25 50"), RUNS (default 1), OUT (also write the table there), ROWS (default
# all five), KERNEL (an unpacked kernel tree; default $WORK/kernel-src, unpacked from
# /usr/src/linux-source-6.1.tar.xz when missing; the kernel rows are skipped without one).
#   --quick: 64 MiB and 2,000 files, one delay of 25 ms, no kernel rows (the smoke test).
set -euo pipefail
export LC_ALL=C
{
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GEN="python3 $HERE/gen.py"
log() { printf 'long-link: %s\n' "$*" >&2; }
die() { printf 'long-link: error: %s\n' "$*" >&2; exit 1; }

BIG=$((1 << 30)); SMALL_N=30000; DELAYS=${DELAYS:-"25 50"}
if [[ ${1:-} == --quick ]]; then BIG=$((64 << 20)); SMALL_N=2000; DELAYS=${DELAYS_QUICK:-25}; fi
RUNS=${RUNS:-1}
ROWS=${ROWS:-"big small noop kernel-noop kernel-delete"}
[[ ${1:-} == --quick ]] && ROWS=${ROWS_QUICK:-"big small noop"}
XSYNC_BIN=${XSYNC_BIN:-$ROOT/target/release/xsync}
WORK=${WORK:-/dev/shm/xsync-long}
[[ -x $XSYNC_BIN ]] || die "no xsync at $XSYNC_BIN (cargo build --release, or set XSYNC_BIN)"
[[ $(id -u) == 0 ]] || die "needs root (sshd logs in as this user)"
[[ -x /usr/sbin/sshd ]] || die "no /usr/sbin/sshd"
command -v rsync >/dev/null || die "no rsync"
[[ -x /usr/bin/time ]] || die "no GNU time at /usr/bin/time"
SYQ=$(command -v syq || true)

mkdir -p "$WORK"
SSH_DIR=$(mktemp -d /tmp/xsync-long-sshd.XXXXXX)
SSHD_PID=""
cleanup() {
    [[ -n $SSHD_PID ]] && kill "$SSHD_PID" 2>/dev/null || true
    rm -rf "$SSH_DIR" "$WORK/dst"
}
trap cleanup EXIT

# sshd ----------------------------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/host_key" </dev/null
ssh-keygen -q -t ed25519 -N '' -f "$SSH_DIR/user_key" </dev/null
cp "$SSH_DIR/user_key.pub" "$SSH_DIR/authorized_keys"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$SSH_DIR/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $SSH_DIR/host_key
PidFile $SSH_DIR/sshd.pid
AuthorizedKeysFile $SSH_DIR/authorized_keys
PermitRootLogin yes
PasswordAuthentication no
UsePAM no
StrictModes no
MaxStartups 100
MaxSessions 100
EOF
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$SSH_DIR/sshd_config" </dev/null 2>>"$SSH_DIR/sshd.log" &
SSHD_PID=$!
for delay in $DELAYS; do
    cat >"$SSH_DIR/config-$delay" <<EOF
Host *
    Port $PORT
    IdentityFile $SSH_DIR/user_key
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    BatchMode yes
    LogLevel ERROR
    ProxyCommand $HERE/delay-relay $delay %h %p
EOF
done
first=${DELAYS%% *}
for _ in $(seq 50); do
    ssh -F "$SSH_DIR/config-$first" 127.0.0.1 true </dev/null 2>/dev/null && break
    sleep 0.1
done

# workloads ------------------------------------------------------------------------------
if [[ ! -f $WORK/big-src.ok || $(cat "$WORK/big-src.ok") != "$BIG" ]]; then
    log "generating a $BIG-byte file"
    rm -rf "$WORK/big-src"; $GEN bigfile "$WORK/big-src/file.bin" "$BIG"; echo "$BIG" >"$WORK/big-src.ok"
fi
if [[ ! -f $WORK/small-src.ok || $(cat "$WORK/small-src.ok") != "$SMALL_N" ]]; then
    log "generating $SMALL_N small files"
    rm -rf "$WORK/small-src"; mkdir -p "$WORK/small-src"; $GEN smallfiles "$WORK/small-src" "$SMALL_N" 300
    echo "$SMALL_N" >"$WORK/small-src.ok"
fi
KERNEL=${KERNEL:-$WORK/kernel-src}
if [[ $ROWS == *kernel* && ! -d $KERNEL ]]; then
    tarball=/usr/src/linux-source-6.1.tar.xz
    if [[ -f $tarball ]]; then
        log "unpacking $tarball into $KERNEL"
        mkdir -p "$KERNEL.tmp" && tar -C "$KERNEL.tmp" --strip-components=1 -xJf "$tarball" && mv "$KERNEL.tmp" "$KERNEL"
    else
        log "no kernel tree ($tarball is missing: apt-get install linux-source-6.1): kernel rows skipped"
        ROWS=$(tr ' ' '\n' <<<"$ROWS" | grep -v kernel | tr '\n' ' ')
    fi
fi
if [[ $ROWS == *kernel-delete* ]]; then
    log "making the changed kernel tree"
    rm -rf "$WORK/kernel-mod"; cp -a "$KERNEL" "$WORK/kernel-mod"; $GEN mutate "$WORK/kernel-mod" 100 50 50
fi

# one timed run --------------------------------------------------------------------------
# run TOOL DELAY SRC [FLAG...]: pushes SRC/ to 127.0.0.1:$WORK/dst/; prints "seconds client_kib
# server_kib".
run() {
    local tool=$1 delay=$2 src=$3 cfg="$SSH_DIR/config-$2" rss="$SSH_DIR/rss" t0 t1 words=()
    shift 3
    : >"$rss"
    case $tool in
        xsync) words=("$XSYNC_BIN" -a "$@" -e "ssh -F $cfg" --xsync-path "$HERE/remote-rss $rss $XSYNC_BIN") ;;
        rsync) words=(rsync -a "$@" -e "ssh -F $cfg" --rsync-path "$HERE/remote-rss $rss rsync") ;;
        syq)   words=("$SYQ" rsync -a "$@" --syq-no-tcp -e "ssh -F $cfg") ;;
    esac
    t0=$(date +%s.%N)
    /usr/bin/time -o "$SSH_DIR/crss" -f '%M' "${words[@]}" "$src/" "127.0.0.1:$WORK/dst/" \
        </dev/null >/dev/null 2>"$SSH_DIR/err" || { log "$tool failed: $(tail -3 "$SSH_DIR/err")"; echo "failed - -"; return; }
    t1=$(date +%s.%N)
    if ! diff -rq "$src" "$WORK/dst" >/dev/null; then echo "wrong-tree - -"; return; fi
    printf '%.2f %s %s\n' "$(echo "$t1 - $t0" | bc)" "$(tail -1 "$SSH_DIR/crss")" "$(sort -n "$rss" | tail -1)"
}

TOOLS="xsync rsync"; [[ -n $SYQ ]] && TOOLS="$TOOLS syq"
TABLE=$(mktemp)
{
    echo "Long link: $(date -u +%Y-%m-%dT%H:%MZ), xsync $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(rsync --version | head -1 | cut -c1-30), load $(cut -d' ' -f1-3 /proc/loadavg)${SYQ:+, syq}"
    echo
    echo "| RTT | row | login s | tool | s (best of $RUNS) | ratio to rsync | client RSS MiB | server RSS MiB |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
} >"$TABLE"
for delay in $DELAYS; do
    rtt=$((2 * delay))
    t0=$(date +%s.%N); ssh -F "$SSH_DIR/config-$delay" 127.0.0.1 true </dev/null; t1=$(date +%s.%N)
    login=$(printf '%.2f' "$(echo "$t1 - $t0" | bc)")
    for row in $ROWS; do
        flags=()
        case $row in
            big) src=$WORK/big-src ;;
            small|noop) src=$WORK/small-src ;;
            kernel-noop) src=$KERNEL; flags=(--delete) ;;
            kernel-delete) src=$WORK/kernel-mod; flags=(--delete) ;;
            *) die "unknown row \`$row\`" ;;
        esac
        declare -A best=() crss=() srss=()
        for tool in $TOOLS; do
            for _ in $(seq "$RUNS"); do
                rm -rf "$WORK/dst"
                case $row in
                    noop) run "$tool" "$delay" "$src" >/dev/null ;;
                    kernel-*) cp -a "$KERNEL" "$WORK/dst" ;;
                esac
                read -r s c r < <(run "$tool" "$delay" "$src" "${flags[@]}")
                log "$rtt ms $row $tool: $s s"
                if [[ -z ${best[$tool]:-} || ( $s != *[a-z-]* && $(echo "$s < ${best[$tool]}" | bc) == 1 ) ]]; then
                    best[$tool]=$s; crss[$tool]=$c; srss[$tool]=$r
                fi
            done
        done
        for tool in $TOOLS; do
            s=${best[$tool]}; ratio=-
            if [[ $s != *[a-z-]* && ${best[rsync]} != *[a-z-]* ]]; then ratio=$(printf '%.2f' "$(echo "$s / ${best[rsync]}" | bc -l)"); fi
            mib() { [[ $1 =~ ^[0-9]+$ ]] && printf '%.0f' "$(echo "$1 / 1024" | bc -l)" || echo -; }
            echo "| $rtt ms | $row | $login | $tool | $s | $ratio | $(mib "${crss[$tool]}") | $(mib "${srss[$tool]}") |" >>"$TABLE"
        done
        unset best crss srss
    done
done
cat "$TABLE"
[[ -n ${OUT:-} ]] && cp "$TABLE" "$OUT"
rm -f "$TABLE"
exit 0
}
