#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions run via "transport_${TRANSPORT}_*" and traps, and the
# whole body is one { } block ending in exit: shellcheck cannot see those calls.
# benches/compare/run.sh: race xsync against rsync and against the copy floor (cp -a, tar, fcp, xcp).
#
# Usage: benches/compare/run.sh [--quick] [--delta] [--disk] [--big] [--only=ID,ID...] [--help]
#
#   --quick          SCALE=tiny and RUNS=1: tiny workloads, finishes in seconds (the smoke test).
#                    Runs TRANSPORT="local ssh pull" unless TRANSPORT is set; the ssh rows say
#                    `skipped` (and why) where no sshd can be started.
#   --delta          also run the delta / -z workloads (e, f, g); same as DELTA=1.
#   --disk           also run the kernel initial copy on ext4 (DISK_WORK); same as DISK=1.
#   --big            TRANSPORT=ssh: also the peak-RSS row, a 4 GiB initial push (h-big4g); BIG=1.
#   --only=IDS       run only these workload ids (comma-separated), e.g. --only=a-small,b-small,
#                    in every selected transport (overrides the per-transport default set).
#
# Environment:
#   XSYNC_BIN=path   use this xsync binary instead of `cargo build --release`.
#   RUNS=N           timed runs per tool and workload (default 5; 1 with --quick).
#   SCALE=full|tiny  workload sizes (default full).
#   WORK=dir         where workloads and destinations live (default /dev/shm/xsync-bench, tmpfs;
#                    with --quick a fresh temporary directory under /dev/shm, removed at the end).
#   DISK_WORK=dir    the ext4 work dir for --disk (default /work/xsync-bench-disk).
#   TOOLS=list       which tools race (default "xsync rsync cp tar fcp xcp").
#   TRANSPORT=list   how xsync/rsync reach the destination, one or more of (default local):
#                      local  both paths local; the copy floor (cp, tar, fcp, xcp) races too.
#                      ssh    push to a private sshd on 127.0.0.1 (throwaway keys), through
#                             count-bytes (bytes on the wire) and remote-rss (the server's RSS).
#                      pull   the same sshd, the other way: HOST:src/ to a local dst/.
#                      netns  the same, between two network namespaces (xsb-a -> xsb-b) joined
#                             by a veth pair shaped to 100 Mbit/s by tbf on both ends.
#                    Default sets: local, ssh and pull run a b c d (+ e f g with --delta); netns runs d
#                    (+ e f g with --delta); --only picks any ids for every transport.
#   INSTALL=0        never install missing tools (default 1: apt-get / cargo install as root).
#   OUT=file         also write the markdown table to this file.
#   XSYNC_REV=rev    the revision XSYNC_BIN was built from, for the header (default: this checkout).
#
# What it guarantees: every number in the table comes from a run whose result was checked
# (content with `diff -rq`, metadata with `rsync -ani`); a tool that is missing, refuses an
# option (exit 1 + message: "n/a (xsync: not implemented)"), fails, or produces a wrong tree
# gets a cell that says so, never a time.
set -euo pipefail
export LC_ALL=C

# The whole script is one { ... } block, parsed before it runs: editing this file while a long
# run is going (bash otherwise reads a script as it executes it) cannot derail that run.
{

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GEN="python3 $HERE/gen.py"
# Bump when a generator changes, so cached workloads are rebuilt.
GEN_VERSION=1

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }

QUICK=0
ONLY=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) QUICK=1 ;;
        --delta) DELTA=1 ;;
        --disk) DISK=1 ;;
        --big) BIG=1 ;;
        --only=*) ONLY=${1#--only=} ;;
        -h|--help) sed -n '/^# benches\/compare\/run.sh:/,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument \`$1\` (see --help)" ;;
    esac
    shift
done

SCALE=${SCALE:-full}
[[ $QUICK == 1 ]] && SCALE=tiny
[[ $SCALE == full || $SCALE == tiny ]] || die "SCALE must be \`full\` or \`tiny\`, not \`$SCALE\`"
if [[ $SCALE == tiny ]]; then RUNS=${RUNS:-1}; else RUNS=${RUNS:-5}; fi
DELTA=${DELTA:-0}
DISK=${DISK:-0}
BIG=${BIG:-0}
INSTALL=${INSTALL:-1}
if [[ $QUICK == 1 ]]; then TRANSPORTS=${TRANSPORT:-"local ssh pull"}; else TRANSPORTS=${TRANSPORT:-local}; fi
TRANSPORTS=$(tr ',' ' ' <<<"$TRANSPORTS")
for t in $TRANSPORTS; do
    case $t in local|ssh|pull|netns) ;; *) die "unknown TRANSPORT \`$t\` (know: local ssh pull netns)" ;; esac
done
TRANSPORT=local
TOOLS=${TOOLS:-"xsync rsync cp tar fcp xcp"}
DISK_WORK=${DISK_WORK:-/work/xsync-bench-disk}
TMP_WORK=""
if [[ -z ${WORK:-} ]]; then
    if [[ $SCALE == tiny ]]; then
        # A private dir: the smoke test may run beside a full run or another test.
        TMP_WORK=$(mktemp -d /dev/shm/xsync-bench-tiny.XXXXXX 2>/dev/null || mktemp -d)
        WORK=$TMP_WORK
    else
        WORK=/dev/shm/xsync-bench
    fi
fi
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# What the remote transports start; transport_teardown_all undoes all of it.
SSHD_PIDS=(); NETNS_MADE=(); SSH_DIR=""; SSHD_LOG=""; SSH_PORT=""; SSH_WORDS=()
RSH_ARGS=(); RSH_COUNTED=(); RSH_PLAIN=(); XSYNC_ARGS=(); RSYNC_ARGS=(); RUN_PREFIX=(); REMOTE_HOST=""
TRANSPORT_SKIP=""; TRANSPORT_DESC=""
transport_teardown_all() {
    local pid ns
    for pid in "${SSHD_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SSHD_PIDS=()
    for ns in "${NETNS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    NETNS_MADE=()
    if [[ -n $SSH_DIR ]]; then rm -rf "$SSH_DIR"; fi
    SSH_DIR=""
    RSH_ARGS=(); XSYNC_ARGS=(); RSYNC_ARGS=(); RUN_PREFIX=(); REMOTE_HOST=""
}
# Everything a transport starts (sshd, namespaces) is stopped here too: on a normal end, on
# `die`, and on Ctrl-C or a kill.
cleanup() {
    transport_teardown_all
    [[ -n $TMP_WORK ]] && rm -rf "$TMP_WORK"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RESDIR=$WORK/results/$(date -u +%Y%m%dT%H%M%SZ)-$$
mkdir -p "$RESDIR"
# A workload's key is TRANSPORT/ID: the same id runs in several transports.
RAW=$RESDIR/raw.tsv         # key tool run wall_s rss_kib sent received server_rss_kib cpu_s ("-": local;
                            # cpu_s: user+sys of the tool and its children on this side: ssh
                            # included, the remote server not)
CELLS=$RESDIR/cells.tsv     # key tool status text   (status: ok na wrong fail skipped pending none)
NOTES=$RESDIR/notes.tsv     # key tool note
WLS=$RESDIR/workloads.tsv   # key transport id description   (in table order)
TRANSPORTS_TSV=$RESDIR/transports.tsv  # transport description   (in table order)
FACTS=$RESDIR/facts.txt
: >"$RAW"; : >"$CELLS"; : >"$NOTES"; : >"$WLS"; : >"$TRANSPORTS_TSV"; : >"$FACTS"

# Rows and cells are keyed by TRANSPORT/ID (TRANSPORT is the one being run).
wl_row() { printf '%s/%s\t%s\t%s\t%s\n' "$TRANSPORT" "$1" "$TRANSPORT" "$1" "$2" >>"$WLS"; }
cell() { printf '%s/%s\t%s\t%s\t%s\n' "$TRANSPORT" "$1" "$2" "$3" "${4:-}" >>"$CELLS"; }
note() { printf '%s/%s\t%s\t%s\n' "$TRANSPORT" "$1" "$2" "$(tr '\t\n' '  ' <<<"$3" | cut -c1-300)" >>"$NOTES"; }

# ---------------------------------------------------------------------------------------------
# Installing what is missing: apt-get update at most once, each package at most once.

APT_UPDATED=0
apt_install() {
    local pkg=$1
    [[ $INSTALL == 1 ]] || { log "not installing \`$pkg\` (INSTALL=0)"; return 1; }
    [[ $(id -u) == 0 ]] || { log "cannot install \`$pkg\`: not root"; return 1; }
    have apt-get || { log "cannot install \`$pkg\`: no apt-get"; return 1; }
    if [[ $APT_UPDATED == 0 ]]; then
        log "apt-get update"
        apt-get update -qq >&2 || log "apt-get update failed; trying the install anyway"
        APT_UPDATED=1
    fi
    log "apt-get install -y $pkg"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >&2
}

ensure_cmd() { # ensure_cmd COMMAND PACKAGE
    have "$1" || apt_install "$2" || true
    have "$1"
}

GNU_TIME=/usr/bin/time
if ! "$GNU_TIME" -f '%e %M' true 2>/dev/null; then
    apt_install time || true
    "$GNU_TIME" -f '%e %M' true 2>/dev/null ||
        die "GNU time (\`/usr/bin/time\`, Debian package \`time\`) is missing and could not be installed: nothing can be measured"
fi
have python3 || die "python3 is missing: the generators and the report need it"
ensure_cmd rsync rsync || log "rsync is missing and could not be installed: rsync column skipped"
ensure_cmd diff diffutils || die "diff is missing: results cannot be verified"

# Tool availability: TOOL_STATE[tool] is "ok" or the reason it cannot run.
declare -A TOOL_STATE TOOL_BIN
for t in xsync rsync cp tar fcp xcp; do TOOL_STATE[$t]="skipped (not selected: TOOLS)"; done
TOOL_STATE[xsync]="pending (not run: not selected in TOOLS)"
for t in $TOOLS; do
    [[ -n ${TOOL_STATE[$t]+x} ]] || die "unknown tool \`$t\` in TOOLS (know: xsync rsync cp tar fcp xcp)"
    TOOL_STATE[$t]=ok
done
[[ ${TOOL_STATE[rsync]} == ok ]] && ! have rsync && TOOL_STATE[rsync]="skipped (rsync not installed)"
[[ ${TOOL_STATE[tar]} == ok ]] && ! have tar && TOOL_STATE[tar]="skipped (tar not installed)"

# fcp and xcp are crates: cargo install them once into /tmp/bench-tools (cached across runs).
BENCH_TOOLS=${BENCH_TOOLS:-/tmp/bench-tools}
find_crate_tool() { # find_crate_tool NAME -> sets TOOL_BIN/TOOL_STATE
    local name=$1
    [[ ${TOOL_STATE[$name]} == ok ]] || return 0
    if [[ -x $BENCH_TOOLS/bin/$name ]]; then TOOL_BIN[$name]=$BENCH_TOOLS/bin/$name
    elif have "$name"; then TOOL_BIN[$name]=$(command -v "$name")
    else TOOL_STATE[$name]="skipped ($name not installed: \`cargo install fcp xcp --root $BENCH_TOOLS\` $1)"
    fi
}
if [[ ${TOOL_STATE[fcp]} == ok || ${TOOL_STATE[xcp]} == ok ]] &&
   ! [[ -x $BENCH_TOOLS/bin/fcp && -x $BENCH_TOOLS/bin/xcp ]] &&
   [[ $SCALE == full && $INSTALL == 1 && ! -e $BENCH_TOOLS/.tried ]] && have cargo; then
    mkdir -p "$BENCH_TOOLS"; touch "$BENCH_TOOLS/.tried"
    log "cargo install fcp xcp --root $BENCH_TOOLS (once; log in $BENCH_TOOLS/install.log)"
    cargo install fcp xcp --root "$BENCH_TOOLS" >"$BENCH_TOOLS/install.log" 2>&1 ||
        log "cargo install fcp xcp failed (see $BENCH_TOOLS/install.log): those columns are skipped"
fi
find_crate_tool fcp; find_crate_tool xcp
[[ ${TOOL_STATE[fcp]} == skipped* ]] && TOOL_STATE[fcp]="skipped (fcp not installed)"
[[ ${TOOL_STATE[xcp]} == skipped* ]] && TOOL_STATE[xcp]="skipped (xcp not installed)"

# xsync: the given binary, or a release build of this checkout.
XSYNC=""
if [[ ${TOOL_STATE[xsync]} == ok ]]; then
    if [[ -n ${XSYNC_BIN:-} ]]; then
        XSYNC=$XSYNC_BIN
        [[ -x $XSYNC ]] || TOOL_STATE[xsync]="pending (XSYNC_BIN \`$XSYNC\` is not executable)"
    else
        log "cargo build --release (in $ROOT)"
        if (cd "$ROOT" && cargo build --release >&2); then
            XSYNC=${CARGO_TARGET_DIR:-$ROOT/target}/release/xsync
            [[ $XSYNC == /* ]] || XSYNC=$ROOT/$XSYNC
        else
            TOOL_STATE[xsync]="pending (cargo build --release failed)"
        fi
    fi
fi

# ---------------------------------------------------------------------------------------------
# Transports: how xsync and rsync reach the destination. Each has transport_<name>_setup (may set
# TRANSPORT_SKIP to why it cannot run), _paths (sets PATHS to the source and destination
# arguments: which of them is remote) and _floor_ok
# (whether the local copy tools race too). The remote ones push through `count-bytes ssh …`
# (COUNT_BYTES_OUT collects the bytes on the wire and the client's peak RSS) to a private sshd,
# and start the server under `remote-rss` (its peak RSS). The destination is on this machine's
# file system either way, so checking a result is the same local `diff` and `rsync -ani`.

BYTES_FILE=$RESDIR/bytes.cur      # count-bytes' lines for the current run
SRV_FILE=$RESDIR/server-rss.cur   # remote-rss' line for the current run
[[ $HERE != *[[:space:]]* && $RESDIR != *[[:space:]]* ]] ||
    die "\`$HERE\` or \`$RESDIR\` contains whitespace: a remote-shell command line would split it"

transport_local_setup() { TRANSPORT_DESC="both paths local (no remote shell); the copy floor races too"; }
PATHS=()
transport_local_paths() { PATHS=("$1/" "$2/"); }
transport_local_floor_ok() { return 0; }

# Why sshd cannot run here (empty when it can).
sshd_prereq() {
    if [[ $(id -u) != 0 ]]; then echo "not running as root (sshd has to log in as this user)"; return; fi
    if [[ ! -x /usr/sbin/sshd && $SCALE == full ]]; then apt_install openssh-server >&2 || true; fi
    if [[ ! -x /usr/sbin/sshd ]]; then echo "/usr/sbin/sshd is not installed (Debian package openssh-server)"; return; fi
    have ssh || { echo "\`ssh\` is not installed (openssh-client)"; return; }
    have ssh-keygen || { echo "\`ssh-keygen\` is not installed (openssh-client)"; return; }
}

# Throwaway host and user keys, in a fresh private directory (removed by transport_teardown_all).
ssh_keys() {
    SSH_DIR=$(mktemp -d /tmp/xsync-bench-sshd.XXXXXX)
    ssh-keygen -q -t ed25519 -N '' -C xsync-bench -f "$SSH_DIR/host_key" </dev/null
    ssh-keygen -q -t ed25519 -N '' -C xsync-bench -f "$SSH_DIR/user_key" </dev/null
    cp "$SSH_DIR/user_key.pub" "$SSH_DIR/authorized_keys"
}

ssh_words() { # the ssh client command line reaching ADDR:PORT with the throwaway key
    SSH_WORDS=(ssh -p "$2" -i "$SSH_DIR/user_key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
               -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR)
}

start_sshd() { # start_sshd ADDR PORT [PREFIX...]: sshd -D on ADDR:PORT (run under PREFIX); false if it does not answer
    local addr=$1 port=$2 cfg log i
    shift 2
    cfg=$SSH_DIR/sshd_config-$port; log=$SSH_DIR/sshd-$port.log
    cat >"$cfg" <<CONFIG
Port $port
ListenAddress $addr
HostKey $SSH_DIR/host_key
PidFile $SSH_DIR/sshd-$port.pid
AuthorizedKeysFile $SSH_DIR/authorized_keys
PermitRootLogin yes
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UseDNS no
MaxStartups 100
MaxSessions 100
LogLevel ERROR
CONFIG
    # OpenSSH 9.8+ would lock a source out after refused logins; older versions reject the option.
    echo "PerSourcePenalties no" >>"$cfg"
    /usr/sbin/sshd -t -f "$cfg" 2>/dev/null || sed -i '$d' "$cfg"
    mkdir -p /run/sshd   # sshd refuses to start without its privilege-separation directory
    "$@" /usr/sbin/sshd -D -e -f "$cfg" </dev/null 2>>"$log" &
    SSHD_PIDS+=("$!")
    ssh_words "$addr" "$port"
    for ((i = 0; i < 100; i++)); do
        kill -0 "${SSHD_PIDS[-1]}" 2>/dev/null || break
        if "${RUN_PREFIX[@]}" "${SSH_WORDS[@]}" "$addr" true </dev/null 2>/dev/null; then SSH_PORT=$port; return 0; fi
        sleep 0.1
    done
    SSHD_LOG=$(tail -3 "$log" 2>/dev/null | tr '\n' ' ')
    kill "${SSHD_PIDS[-1]}" 2>/dev/null || true
    return 1
}

remote_args() { # the -e and --xsync-path / --rsync-path both tools get, once SSH_PORT is set
    ssh_words "$REMOTE_HOST" "$SSH_PORT"
    # Timed runs go through plain ssh; one extra run per tool and workload goes through
    # count-bytes for the bytes on the wire and the client's RSS (run_workload). The relay
    # (a Python process on the same 2 cores) added ~0.15 s to every run of either tool.
    RSH_COUNTED=(-e "$HERE/count-bytes ${SSH_WORDS[*]}")
    RSH_PLAIN=(-e "${SSH_WORDS[*]}")
    RSH_ARGS=("${RSH_PLAIN[@]}")
    XSYNC_ARGS=(--xsync-path "$HERE/remote-rss $SRV_FILE $XSYNC")
    RSYNC_ARGS=(--rsync-path "$HERE/remote-rss $SRV_FILE rsync")
}

transport_ssh_setup() {
    local why try port
    why=$(sshd_prereq)
    if [[ -n $why ]]; then TRANSPORT_SKIP="sshd not available: $why"; return 0; fi
    ssh_keys
    RUN_PREFIX=(); REMOTE_HOST=127.0.0.1; SSH_PORT=""
    for try in 1 2 3 4 5; do   # another port if the free one was taken before sshd bound it
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        start_sshd 127.0.0.1 "$port" && break
        log "sshd on 127.0.0.1:$port did not answer (try $try): $SSHD_LOG"
    done
    if [[ -z $SSH_PORT ]]; then TRANSPORT_SKIP="sshd did not start: ${SSHD_LOG:-no log}"; return 0; fi
    remote_args
    TRANSPORT_DESC="push over ssh to a private sshd on 127.0.0.1 (loopback, $(ssh -V 2>&1 | cut -d, -f1), default cipher, no ssh compression)"
}
transport_ssh_paths() { PATHS=("$1/" "$REMOTE_HOST:$2/"); }
transport_ssh_floor_ok() { return 1; }

# The same private sshd, the other direction: the tools pull from it, so the client is the
# receiver (it scans and writes the destination) and the server the sender.
transport_pull_setup() {
    transport_ssh_setup
    [[ -n $TRANSPORT_SKIP ]] || TRANSPORT_DESC="pull over ssh from a private sshd on 127.0.0.1 (loopback, $(ssh -V 2>&1 | cut -d, -f1), default cipher, no ssh compression)"
}
transport_pull_paths() { PATHS=("$REMOTE_HOST:$1/" "$2/"); }
transport_pull_floor_ok() { return 1; }

NS_A=xsb-a; NS_B=xsb-b
ns_step() { # run one setup command; on failure, TRANSPORT_SKIP says which and why
    local out
    out=$("$@" 2>&1) && return 0
    TRANSPORT_SKIP="\`$*\` failed: $(tr '\n' ' ' <<<"$out")"
    return 1
}

transport_netns_setup() {
    local why ns t0 t1 bytes=50000000
    why=$(sshd_prereq)
    if [[ -n $why ]]; then TRANSPORT_SKIP="sshd not available: $why"; return 0; fi
    ensure_cmd ip iproute2 || { TRANSPORT_SKIP="\`ip\` is missing and iproute2 could not be installed"; return 0; }
    ensure_cmd tc iproute2 || { TRANSPORT_SKIP="\`tc\` is missing and iproute2 could not be installed"; return 0; }
    for ns in "$NS_A" "$NS_B"; do
        if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns"; then
            # Left over from a run that was killed: reuse the name unless something lives in it.
            if [[ -n $(ip netns pids "$ns" 2>/dev/null) ]]; then
                TRANSPORT_SKIP="network namespace \`$ns\` already exists with processes in it (another run?)"; return 0
            fi
            ip netns del "$ns"
        fi
    done
    ns_step ip netns add "$NS_A" || return 0; NETNS_MADE+=("$NS_A")
    ns_step ip netns add "$NS_B" || return 0; NETNS_MADE+=("$NS_B")
    ns_step ip link add xsb-va netns "$NS_A" type veth peer name xsb-vb netns "$NS_B" || return 0
    ns_step ip -n "$NS_A" addr add 10.213.0.1/24 dev xsb-va || return 0
    ns_step ip -n "$NS_B" addr add 10.213.0.2/24 dev xsb-vb || return 0
    for ns in "$NS_A" "$NS_B"; do ns_step ip -n "$ns" link set lo up || return 0; done
    ns_step ip -n "$NS_A" link set xsb-va up || return 0
    ns_step ip -n "$NS_B" link set xsb-vb up || return 0
    # 100 Mbit/s each way (netem is not available here, so no added delay: only the rate).
    ns_step ip netns exec "$NS_B" tc qdisc add dev xsb-vb root tbf rate 100mbit burst 32kbit latency 400ms || return 0
    ns_step ip netns exec "$NS_A" tc qdisc add dev xsb-va root tbf rate 100mbit burst 32kbit latency 400ms || return 0
    ssh_keys
    RUN_PREFIX=(ip netns exec "$NS_A"); REMOTE_HOST=10.213.0.2; SSH_PORT=""
    if ! start_sshd 10.213.0.2 22 ip netns exec "$NS_B"; then
        TRANSPORT_SKIP="sshd in namespace $NS_B did not start: ${SSHD_LOG:-no log}"; return 0
    fi
    remote_args
    # What the link really carries: 50 MB of zeros through ssh (no compression), b -> a.
    t0=$(date +%s%N)
    "${RUN_PREFIX[@]}" "${SSH_WORDS[@]}" "$REMOTE_HOST" "head -c $bytes /dev/zero" </dev/null | wc -c >"$SSH_DIR/probe"
    t1=$(date +%s%N)
    TRANSPORT_DESC="push over ssh from namespace $NS_A (10.213.0.1) to sshd in $NS_B (10.213.0.2), a veth pair with \`tbf rate 100mbit burst 32kbit latency 400ms\` on both ends; measured: $(python3 -c "print(f'{$(cat "$SSH_DIR/probe")*8/(($t1-$t0)/1e9)/1e6:.1f}')") Mbit/s for ${bytes} bytes of zeros through ssh, connection set-up included"
}
transport_netns_paths() { PATHS=("$1/" "$REMOTE_HOST:$2/"); }
transport_netns_floor_ok() { return 1; }

# ---------------------------------------------------------------------------------------------
# Workload generation, cached by a marker file beside each tree (not inside: it would be synced).

fresh() { # fresh MARKER PARAMS: true if the cached tree for PARAMS must be (re)built
    [[ "$(cat "$1" 2>/dev/null)" != "v$GEN_VERSION $2" ]]
}
mark() { printf 'v%s %s\n' "$GEN_VERSION" "$2" >"$1"; }

if [[ $SCALE == full ]]; then
    SMALL_N=30000; SMALL_DIRS=300; BIG_SIZE=$((1 << 30)); DELTA_SIZE=$((2 << 30))
    TEXT_BYTES=200000000; MUT="100 50 50"; FAKE_KERNEL_N=0
else
    SMALL_N=200; SMALL_DIRS=20; BIG_SIZE=$((4 << 20)); DELTA_SIZE=$((8 << 20))
    TEXT_BYTES=1000000; MUT="10 5 5"; FAKE_KERNEL_N=300
fi
KERNEL_TARBALL=/usr/src/linux-source-6.1.tar.xz
KERNEL_SKIP=""

prepare_kernel() {
    local dir=$WORK/kernel-src marker=$WORK/kernel-src.ok
    if [[ $SCALE == tiny ]]; then
        if fresh "$marker" "fake $FAKE_KERNEL_N"; then
            rm -rf "$dir"; mkdir -p "$dir"; $GEN fakekernel "$dir" "$FAKE_KERNEL_N"
            mark "$marker" "fake $FAKE_KERNEL_N"
        fi
        KERNEL_DESC="fake kernel tree"
        return 0
    fi
    if fresh "$marker" "$KERNEL_TARBALL"; then
        if [[ ! -f $KERNEL_TARBALL ]]; then
            apt_install linux-source-6.1 || true
        fi
        if [[ ! -f $KERNEL_TARBALL ]]; then
            KERNEL_SKIP="\`$KERNEL_TARBALL\` is missing and \`apt-get install linux-source-6.1\` failed"
            return 0
        fi
        have xz || apt_install xz-utils || true
        if ! have xz; then KERNEL_SKIP="xz is missing (Debian package xz-utils): cannot unpack the kernel"; return 0; fi
        log "unpacking $KERNEL_TARBALL into $dir (once)"
        rm -rf "$dir" "$dir.tmp"; mkdir -p "$dir.tmp"
        tar -C "$dir.tmp" --strip-components=1 -xJf "$KERNEL_TARBALL"
        mv "$dir.tmp" "$dir"
        mark "$marker" "$KERNEL_TARBALL"
    fi
    KERNEL_DESC="Linux 6.1 source"
}

prepare_small() {
    local dir=$WORK/small-src marker=$WORK/small-src.ok
    if fresh "$marker" "$SMALL_N $SMALL_DIRS"; then
        log "generating $SMALL_N small files"
        rm -rf "$dir"; mkdir -p "$dir"; $GEN smallfiles "$dir" "$SMALL_N" "$SMALL_DIRS"
        mark "$marker" "$SMALL_N $SMALL_DIRS"
    fi
}

# The single big files are not cached: tmpfs is RAM on a shared machine, and they take seconds
# to regenerate. Each is made just before its workload and removed after it (drop_big).
prepare_big() {
    log "generating a $BIG_SIZE-byte file"
    rm -rf "$WORK/big-src"; $GEN bigfile "$WORK/big-src/file.bin" "$BIG_SIZE"
}

prepare_delta() { # prepare_delta edit|insert: $WORK/delta/orig (the basis) and $WORK/delta/<variant>
    local dir=$WORK/delta
    if [[ ! -f $dir/orig/file.bin ]]; then
        log "generating the delta basis ($DELTA_SIZE bytes)"
        rm -rf "$dir"; $GEN bigfile "$dir/orig/file.bin" "$DELTA_SIZE"
    fi
    rm -rf "$dir/edit" "$dir/insert"
    if [[ $1 == edit ]]; then
        mkdir -p "$dir/edit"; cp -a "$dir/orig/file.bin" "$dir/edit/file.bin"
        $GEN edit "$dir/edit/file.bin" 16 4096
        touch -d @1704067200 "$dir/edit"
    else
        $GEN insert "$dir/orig/file.bin" "$dir/insert/file.bin"
    fi
}

prepare_text() {
    local dir=$WORK/text-src marker=$WORK/text-src.ok
    if fresh "$marker" "$TEXT_BYTES $(cat "$WORK/kernel-src.ok")"; then
        rm -rf "$dir"; $GEN texttree "$WORK/kernel-src" "$dir" "$TEXT_BYTES"
        mark "$marker" "$TEXT_BYTES $(cat "$WORK/kernel-src.ok")"
    fi
}

prepare_kernel_mod() {
    # The (c) source: a fresh copy of the pristine tree with the deterministic changes applied,
    # rebuilt every invocation; the destination is reset to the pristine tree before each run.
    rm -rf "$WORK/kernel-mod"
    cp -a "$WORK/kernel-src" "$WORK/kernel-mod"
    # shellcheck disable=SC2086
    $GEN mutate "$WORK/kernel-mod" $MUT
}

prepare_disk_kernel() {
    local dir=$DISK_WORK/kernel-src marker=$DISK_WORK/kernel-src.ok
    mkdir -p "$DISK_WORK"
    if fresh "$marker" "$(cat "$WORK/kernel-src.ok")"; then
        log "copying the kernel tree to $DISK_WORK (once)"
        rm -rf "$dir"; cp -a "$WORK/kernel-src" "$dir"; sync
        mark "$marker" "$(cat "$WORK/kernel-src.ok")"
    fi
}

# Refuse a workload that would not fit, rather than push a shared machine into the OOM killer:
# tmpfs lives in RAM. NEED is the workload's peak footprint in GiB (sources + destination +
# the receiver's temporary file); 2 GiB stay free for everyone else.
room_kib() { # room_kib DIR: free KiB in DIR, and no more than MemAvailable when DIR is tmpfs
    local avail_kib mem_kib
    mkdir -p "$1"
    avail_kib=$(df -Pk "$1" | awk 'NR==2 {print $4}')
    if [[ $(fstype "$1") == tmpfs ]]; then
        mem_kib=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
        ((mem_kib < avail_kib)) && avail_kib=$mem_kib
    fi
    echo "$avail_kib"
}

fits() { # fits ID DESC NEED_GIB DIR -> false (and a skipped row) if DIR cannot hold NEED_GIB
    local id=$1 desc=$2 need=$3 dir=$4 avail_kib
    [[ $SCALE == tiny ]] && return 0
    avail_kib=$(room_kib "$dir")
    if ((avail_kib < (need + 2) * 1024 * 1024)); then
        skip_workload "$id" "$desc" "needs about $need GiB free in \`$dir\` plus 2 GiB spare; $((avail_kib / 1024 / 1024)) GiB available"
        return 1
    fi
}

tree_facts() { # "N files, S MB"
    local n bytes
    n=$(find "$1" -type f | wc -l)
    bytes=$(du -sb "$1" | cut -f1)
    python3 -c "import sys; n,b=int(sys.argv[1]),int(sys.argv[2]); print(f'{n:,} files, {b/1e6:,.0f} MB' if b>=1e7 else f'{n:,} files, {b/1e3:,.0f} kB')" "$n" "$bytes"
}

# ---------------------------------------------------------------------------------------------
# Tools: CMD is the command for one timed run.

tool_label() {
    case $1 in
        xsync) echo "xsync -a" ;; rsync) echo "rsync -a" ;; cp) echo "cp -a" ;;
        tar) echo "tar | tar" ;; fcp) echo "fcp" ;; xcp) echo "xcp -r" ;;
    esac
}

# $1 and $2 are expanded by the inner sh, on purpose.
# shellcheck disable=SC2016
TAR_PIPE='mkdir -p "$2" && tar -C "$1" -cf - . | tar -C "$2" -xf -'

set_cmd() { # set_cmd TOOL SRC DST EXTRA...
    local tool=$1 src=$2 dst=$3; shift 3
    "transport_${TRANSPORT}_paths" "$src" "$dst"
    case $tool in
        xsync) CMD=("$XSYNC" -a "${RSH_ARGS[@]}" "${XSYNC_ARGS[@]}" "$@" "${PATHS[@]}") ;;
        rsync) CMD=(rsync -a "${RSH_ARGS[@]}" "${RSYNC_ARGS[@]}" "$@" "${PATHS[@]}") ;;
        cp) CMD=(cp -a "$src/." "$dst") ;;
        tar) CMD=(sh -c "$TAR_PIPE" tar "$src" "$dst") ;;
        fcp) CMD=("${TOOL_BIN[fcp]}" "$src" "$dst") ;;
        xcp) CMD=("${TOOL_BIN[xcp]}" -r --no-progress -o "$src" "$dst") ;;
    esac
}

# Which tools make sense for a kind of workload: the floor tools only copy everything, so they
# bound an initial copy (and a delta, where "just copy it again" is the bar), not a no-op or a
# --delete update. Over a remote transport only xsync and rsync race.
applies() { # applies TOOL KIND
    [[ $1 == xsync || $1 == rsync ]] || "transport_${TRANSPORT}_floor_ok" || return 1
    case $2 in
        copy) return 0 ;;
        delta) [[ $1 == xsync || $1 == rsync || $1 == cp ]] ;;
        *) [[ $1 == xsync || $1 == rsync ]] ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# Measuring and checking.

WALL=0; RSS=0; CPU=0; RC=0; SENT=-; RECV=-; SRV_RSS=-
measure() { # runs CMD; sets WALL (s), RSS (KiB), RC, and for a remote run SENT/RECV (bytes) and SRV_RSS (KiB)
    local tf=$RESDIR/last.time t0 t1 crss
    : >"$BYTES_FILE"; : >"$SRV_FILE"
    t0=$(date +%s%N)
    set +e
    COUNT_BYTES_OUT=$BYTES_FILE "${RUN_PREFIX[@]}" "$GNU_TIME" -f '%e %M %U %S' -o "$tf" "${CMD[@]}" >/dev/null 2>"$RESDIR/last.err"
    RC=$?
    set -e
    t1=$(date +%s%N)
    # Wall from our own nanosecond clock (GNU time's %e has 10 ms steps); RSS from %M, the
    # largest single process (for rsync's three processes that is the biggest one, not the sum).
    WALL=$(python3 -c "print(f'{($t1-$t0)/1e9:.4f}')")
    RSS=$(tail -1 "$tf" | awk '{print $2}')
    [[ $RSS =~ ^[0-9]+$ ]] || RSS=0
    CPU=$(tail -1 "$tf" | awk '{printf "%.2f", $3 + $4}')
    SENT=-; RECV=-; SRV_RSS=-
    [[ $TRANSPORT != local ]] || return 0
    # Over a remote shell GNU time's largest process may be ssh or count-bytes itself, so the
    # client's RSS is the one count-bytes read from its parent (the tool), and the server's
    # comes from remote-rss. A connection that recorded nothing leaves the bytes unknown.
    if [[ -s $BYTES_FILE ]]; then
        read -r SENT RECV crss < <(awk '{s += $1; r += $2; if ($3 > m) m = $3} END {printf "%.0f %.0f %.0f\n", s, r, m}' "$BYTES_FILE")
        if ((crss > 0)); then RSS=$crss; fi
    fi
    SRV_RSS=$(tail -1 "$SRV_FILE" 2>/dev/null | awk '{print $NF}')
    [[ $SRV_RSS =~ ^[0-9]+$ ]] || SRV_RSS=-
}

VERIFY=""; VERIFY_MSG=""
verify() { # verify SRC DST -> VERIFY = ok | content | meta
    local src=$1 dst=$2 out
    VERIFY=ok; VERIFY_MSG=""
    if [[ ! -d $dst ]]; then VERIFY=content; VERIFY_MSG="destination \`$dst\` does not exist"; return; fi
    if ! out=$(diff -rq --no-dereference "$src" "$dst" 2>&1); then
        VERIFY=content; VERIFY_MSG="content differs: $(head -1 <<<"$out")"; return
    fi
    if have rsync; then
        out=$(rsync -ani --delete "$src/" "$dst/" 2>&1 | head -5)
        if [[ -n $out ]]; then VERIFY=meta; VERIFY_MSG="metadata differs (rsync -ani: $(head -2 <<<"$out" | tr '\n' ';'))"; fi
    fi
}

# xsync refuses what it does not support with exit 1 and a message (DESIGN.md promise 1).
NOT_IMPL_RE='not (yet )?(implemented|supported)|unsupported|unknown option|unexpected argument|unrecognized option'

# ---------------------------------------------------------------------------------------------
# One workload: interleaved timed runs of every applicable tool.

# The state a run starts from: nothing for a copy, the tool's own result for a no-op, a
# fresh copy of the basis for an update or a delta.
reset_dst() { # reset_dst KIND DST BASIS
    mkdir -p "$WORK/dst"
    case $1 in
        copy) rm -rf "$2" ;;
        noop) ;;
        update|delta) rm -rf "$2"; cp -a "$3" "$2" ;;
    esac
}

run_workload() { # run_workload ID KIND DESC SRC BASIS RUNS EXTRA...
    local id=$1 kind=$2 desc=$3 src=$4 basis=$5 runs=$6; shift 6
    local extra=("$@") tools=() t r i n dst msg
    wl_row "$id" "$desc"
    declare -A state
    for t in xsync rsync cp tar fcp xcp; do
        if ! applies "$t" "$kind"; then cell "$id" "$t" none; continue; fi
        if [[ ${TOOL_STATE[$t]} != ok ]]; then
            cell "$id" "$t" "${TOOL_STATE[$t]%% *}" "${TOOL_STATE[$t]#* }"; continue
        fi
        tools+=("$t"); state[$t]=ok
    done
    log "workload $TRANSPORT/$id: $desc (${#tools[@]} tools x $runs runs)"

    # A no-op is timed on the tool's own result: each tool first syncs into an empty
    # destination (untimed, checked), so a tool that does nothing cannot post a fast no-op.
    if [[ $kind == noop ]]; then
        for t in "${tools[@]}"; do
            dst=$WORK/dst/$id-$t; rm -rf "$dst"; mkdir -p "$WORK/dst"
            set_cmd "$t" "$src" "$dst" "${extra[@]}"
            measure
            if [[ $RC != 0 ]]; then
                msg=$(head -3 "$RESDIR/last.err")
                if [[ $t == xsync && $RC == 1 ]] && grep -Eqi "$NOT_IMPL_RE" "$RESDIR/last.err"; then
                    state[$t]=na; cell "$id" "$t" na; note "$id" "$t" "initial sync refused: $msg"
                else
                    state[$t]=fail; cell "$id" "$t" fail "exit $RC"; note "$id" "$t" "initial sync failed (exit $RC): $msg"
                fi
                continue
            fi
            verify "$src" "$dst"
            if [[ $VERIFY != ok ]]; then
                state[$t]=wrong; cell "$id" "$t" wrong; note "$id" "$t" "initial sync: $VERIFY_MSG"
            fi
        done
    fi

    # Over a remote shell: one untimed run per tool through count-bytes for the bytes on the
    # wire and the client's peak RSS (the timed runs below use plain ssh). Same starting
    # state as a timed run; a no-op re-syncs its own result.
    declare -A csent crecv crss
    if [[ $TRANSPORT != local ]]; then
        for t in "${tools[@]}"; do
            [[ ${state[$t]} == ok ]] || continue
            dst=$WORK/dst/$id-$t
            reset_dst "$kind" "$dst" "$basis"
            RSH_ARGS=("${RSH_COUNTED[@]}")
            set_cmd "$t" "$src" "$dst" "${extra[@]}"
            measure
            RSH_ARGS=("${RSH_PLAIN[@]}")
            csent[$t]=$SENT; crecv[$t]=$RECV; crss[$t]=$RSS
            log "  $t counted run: exit $RC, client ${RSS}KiB, sent $SENT received $RECV bytes"
            [[ $kind == noop ]] || rm -rf "$dst"
        done
    fi

    n=${#tools[@]}
    for ((r = 1; r <= runs; r++)); do
        for ((i = 0; i < n; i++)); do
            # Rotate the starting tool each round: A B C, B C A, ... so no tool always goes first.
            t=${tools[$(((i + r - 1) % n))]}
            [[ ${state[$t]} == ok ]] || continue
            dst=$WORK/dst/$id-$t
            reset_dst "$kind" "$dst" "$basis"
            sync
            set_cmd "$t" "$src" "$dst" "${extra[@]}"
            measure
            if [[ $RC != 0 ]]; then
                msg=$(head -3 "$RESDIR/last.err")
                if [[ $t == xsync && $RC == 1 ]] && grep -Eqi "$NOT_IMPL_RE" "$RESDIR/last.err"; then
                    state[$t]=na; cell "$id" "$t" na; note "$id" "$t" "$msg"
                else
                    state[$t]=fail; cell "$id" "$t" fail "exit $RC"; note "$id" "$t" "exit $RC: $msg"
                fi
                log "  $t run $r: exit $RC"
                continue
            fi
            # Check the first run of each tool (and every run with --quick): a wrong tree
            # gets no time. Metadata differences only disqualify xsync and rsync; for the floor
            # tools they are a footnote (they do not promise rsync -a's metadata).
            if [[ $r == 1 || $SCALE == tiny ]]; then
                verify "$src" "$dst"
                if [[ $VERIFY == content || ($VERIFY == meta && ($t == xsync || $t == rsync)) ]]; then
                    state[$t]=wrong; cell "$id" "$t" wrong; note "$id" "$t" "$VERIFY_MSG"
                    log "  $t run $r: WRONG RESULT: $VERIFY_MSG"
                    rm -rf "$dst"
                    continue
                fi
                if [[ $VERIFY == meta && $r == 1 ]]; then note "$id" "$t" "$VERIFY_MSG"; fi
            fi
            if [[ $TRANSPORT != local ]]; then SENT=${csent[$t]:--}; RECV=${crecv[$t]:--}; RSS=${crss[$t]:-$RSS}; fi
            printf '%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$TRANSPORT" "$id" "$t" "$r" "$WALL" "$RSS" "$SENT" "$RECV" "$SRV_RSS" "$CPU" >>"$RAW"
            if [[ $TRANSPORT == local ]]; then log "  $t run $r: ${WALL}s ${RSS}KiB"
            else log "  $t run $r: ${WALL}s, client ${RSS}KiB, server ${SRV_RSS}KiB, sent $SENT received $RECV bytes"; fi
            if [[ $TRANSPORT != local && $SENT == - ]]; then note "$id" "$t" "count-bytes recorded no connection: bytes unknown"; fi
            # One destination at a time (tmpfs is RAM); a no-op keeps its own across runs.
            [[ $kind == noop ]] || rm -rf "$dst"
        done
    done
    for t in "${tools[@]}"; do
        [[ ${state[$t]} == ok ]] && cell "$id" "$t" ok
        # Destinations are big (tmpfs is RAM): drop each one when its workload is done.
        rm -rf "$WORK/dst/$id-$t"
    done
    return 0
}

skip_workload() { # skip_workload ID DESC REASON
    wl_row "$1" "$2"
    log "workload $TRANSPORT/$1 skipped: $3"
    for t in xsync rsync cp tar fcp xcp; do cell "$1" "$t" skipped "$3"; done
}

# The workloads each transport runs by default; --only overrides (any id, every transport).
# ssh at tiny scale adds e f g, so the smoke test covers the delta and -z over a real sshd.
default_set() {
    local set="a-kernel a-small b-kernel b-small c-kernel d-bigfile" dfg="e-delta-edit f-delta-insert g-text-z g-text g-text-noz"
    case $TRANSPORT in
        local)
            [[ $DELTA == 1 ]] && set+=" $dfg"
            [[ $DISK == 1 ]] && set+=" a-kernel-disk" ;;
        ssh|pull)
            [[ $DELTA == 1 || $SCALE == tiny ]] && set+=" $dfg"
            [[ $BIG == 1 ]] && set+=" h-big4g" ;;
        netns)
            set="d-bigfile"
            [[ $DELTA == 1 ]] && set+=" $dfg"
            [[ $BIG == 1 ]] && set+=" h-big4g" ;;
    esac
    echo "$set"
}
want() {
    case $1 in
        a-kernel-disk) [[ $TRANSPORT == local ]] || return 1 ;;
        h-big4g) [[ $TRANSPORT != local ]] || return 1 ;;
    esac
    if [[ -n $ONLY ]]; then [[ ",$ONLY," == *",$1,"* ]]; else [[ " $(default_set) " == *" $1 "* ]]; fi
}
ALL_WORKLOADS="a-kernel a-small b-kernel b-small c-kernel d-bigfile e-delta-edit f-delta-insert g-text-z g-text g-text-noz h-big4g a-kernel-disk"

# ---------------------------------------------------------------------------------------------
# Machine facts, then the workloads.

fstype() { # the file system type of the mount holding $1 (first line: findmnt lists overlays)
    local t
    t=$(findmnt -n -o FSTYPE -T "$1" 2>/dev/null | head -1 || true)
    [[ -n $t ]] || t=$(stat -f -c %T "$1")
    echo "$t"
}

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, Linux $(uname -r)"
    echo "work dir: \`$WORK\` ($(fstype "$WORK"))"
    [[ $DISK == 1 ]] && echo "disk work dir: \`$DISK_WORK\` ($(mkdir -p "$DISK_WORK"; fstype "$DISK_WORK"))"
    rsync_version=$(rsync --version 2>/dev/null || true)
    echo "rsync: $(if [[ -n $rsync_version ]]; then head -1 <<<"$rsync_version" | sed 's/  */ /g'; else echo missing; fi)"
    if [[ -n $XSYNC ]]; then
        echo "xsync: $(timeout 10 "$XSYNC" --version 2>&1 | head -1) (git ${XSYNC_REV:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)})"
    else
        echo "xsync: ${TOOL_STATE[xsync]}"
    fi
    echo "floor: $(cp --version | head -1), $(tar --version | head -1)${TOOL_BIN[fcp]:+, fcp $("${TOOL_BIN[fcp]}" --version 2>&1 | head -1 | awk '{print $NF}')}${TOOL_BIN[xcp]:+, xcp $("${TOOL_BIN[xcp]}" --version 2>&1 | head -1 | awk '{print $NF}')}"
    echo "runs: $RUNS per tool and workload, interleaved; scale: $SCALE; transports: $TRANSPORTS"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$FACTS"

[[ $SCALE == tiny ]] && KTAG="fake kernel" || KTAG="kernel"
BIG_GIB=$(( (BIG_SIZE + (1 << 30) - 1) >> 30 )); DELTA_GIB=$(( (DELTA_SIZE + (1 << 30) - 1) >> 30 ))
if [[ $SCALE == full ]]; then BIG4_SIZE=$((4 << 30)); else BIG4_SIZE=$((16 << 20)); fi

run_transport_workloads() { # the selected workloads of $TRANSPORT, in table order
    local desc dsize delta_flags=() how w hdir
    if [[ -n $TRANSPORT_SKIP ]]; then
        for w in $ALL_WORKLOADS; do want "$w" && skip_workload "$w" "$w over $TRANSPORT" "$TRANSPORT_SKIP"; done
        return 0
    fi
    if want a-kernel || want b-kernel || want c-kernel || want g-text-z || want g-text || want g-text-noz || want a-kernel-disk; then
        prepare_kernel
        [[ -n $KERNEL_SKIP ]] || KFACTS=$(tree_facts "$WORK/kernel-src")
    fi
    KGIB=2; [[ $SCALE == full ]] && KGIB=$(( $(du -sk "$WORK/kernel-src" 2>/dev/null | cut -f1 || echo 0) / 1024 / 1024 + 1 ))

    if want a-kernel; then
        desc="initial copy, $KERNEL_DESC ($KFACTS)"
        if [[ -n $KERNEL_SKIP ]]; then skip_workload a-kernel "initial copy, kernel tree" "$KERNEL_SKIP"
        elif fits a-kernel "$desc" "$KGIB" "$WORK"; then
            run_workload a-kernel copy "$desc" "$WORK/kernel-src" "" "$RUNS"
        fi
    fi

    if want a-small || want b-small; then prepare_small; SFACTS=$(tree_facts "$WORK/small-src"); fi
    if want a-small; then run_workload a-small copy "initial copy, small files ($SFACTS, 0-8 KiB)" "$WORK/small-src" "" "$RUNS"; fi

    if want b-kernel; then
        desc="no-op re-sync, $KERNEL_DESC"
        if [[ -n $KERNEL_SKIP ]]; then skip_workload b-kernel "no-op re-sync, kernel tree" "$KERNEL_SKIP"
        elif fits b-kernel "$desc" $((2 * KGIB)) "$WORK"; then   # one destination per tool
            run_workload b-kernel noop "$desc" "$WORK/kernel-src" "" "$RUNS"
        fi
    fi
    if want b-small; then run_workload b-small noop "no-op re-sync, small files" "$WORK/small-src" "" "$RUNS"; fi

    if want c-kernel; then
        read -r m_app m_del m_add <<<"$MUT"
        desc="\`--delete\` update, $KERNEL_DESC: $m_app appended, $m_del deleted, $m_add added"
        if [[ -n $KERNEL_SKIP ]]; then skip_workload c-kernel "--delete update, kernel tree" "$KERNEL_SKIP"
        elif fits c-kernel "$desc" $((2 * KGIB)) "$WORK"; then   # changed source + destination
            prepare_kernel_mod
            run_workload c-kernel update "$desc" "$WORK/kernel-mod" "$WORK/kernel-src" "$RUNS" --delete
            rm -rf "$WORK/kernel-mod"
        fi
    fi

    if want d-bigfile; then
        desc="initial copy, one $(numfmt --to=iec-i --suffix=B "$BIG_SIZE") file"
        if fits d-bigfile "$desc" $((2 * BIG_GIB)) "$WORK"; then   # source + destination
            prepare_big
            run_workload d-bigfile copy "$desc" "$WORK/big-src" "" "$RUNS"
            rm -rf "$WORK/big-src"
        fi
    fi

    dsize=$(numfmt --to=iec-i --suffix=B "$DELTA_SIZE")
    # A local copy is whole-file by default for both tools, so ask for the delta; over a remote
    # shell both deltas are on by default, and that default is what is measured.
    if [[ $TRANSPORT == local ]]; then delta_flags=(--no-whole-file); how="\`--no-whole-file\`"; else how="defaults: delta on"; fi
    # Peak: basis + changed source + the destination's basis copy + the receiver's temp file.
    if want e-delta-edit; then
        desc="delta, $dsize file with 16 scattered 4 KiB edits ($how)"
        if fits e-delta-edit "$desc" $((4 * DELTA_GIB)) "$WORK"; then
            prepare_delta edit
            run_workload e-delta-edit delta "$desc" "$WORK/delta/edit" "$WORK/delta/orig" "$RUNS" "${delta_flags[@]}"
        fi
    fi
    if want f-delta-insert; then
        desc="delta, $dsize file with 1 byte inserted in the middle ($how)"
        if fits f-delta-insert "$desc" $((4 * DELTA_GIB)) "$WORK"; then
            prepare_delta insert
            run_workload f-delta-insert delta "$desc" "$WORK/delta/insert" "$WORK/delta/orig" "$RUNS" "${delta_flags[@]}"
        fi
    fi
    rm -rf "$WORK/delta"
    if want g-text-z; then
        if [[ -n $KERNEL_SKIP ]]; then skip_workload g-text-z "initial copy with -z, source text" "$KERNEL_SKIP"
        else
            prepare_text
            run_workload g-text-z copy "initial copy with \`-z\`, source text from the $KTAG tree ($(tree_facts "$WORK/text-src"))" \
                "$WORK/text-src" "" "$RUNS" -z
        fi
    fi
    # The same tree with default flags (xsync compresses where the link makes it pay, rsync
    # sends raw) and with compression off (\`--no-compress\`, both tools raw): the bar the
    # default must not fall below on a fast link.
    if want g-text; then
        if [[ -n $KERNEL_SKIP ]]; then skip_workload g-text "initial copy, default flags, source text" "$KERNEL_SKIP"
        else
            prepare_text
            run_workload g-text copy "initial copy, default flags, source text from the $KTAG tree ($(tree_facts "$WORK/text-src"))" \
                "$WORK/text-src" "" "$RUNS"
        fi
    fi
    if want g-text-noz; then
        if [[ -n $KERNEL_SKIP ]]; then skip_workload g-text-noz "initial copy with --no-compress, source text" "$KERNEL_SKIP"
        else
            prepare_text
            run_workload g-text-noz copy "initial copy with \`--no-compress\`, source text from the $KTAG tree ($(tree_facts "$WORK/text-src"))" \
                "$WORK/text-src" "" "$RUNS" --no-compress
        fi
    fi
    rm -rf "$WORK/text-src" "$WORK/text-src.ok"

    if want h-big4g; then
        # Source + destination: on tmpfs only when MemAvailable leaves room for both and 2 GiB
        # spare; otherwise on the ext4 disk (DISK_WORK), and the row says so.
        hdir=$WORK
        if [[ $SCALE == full ]] && (( $(room_kib "$WORK") < (2 * 4 + 2) * 1024 * 1024 )); then
            hdir=$DISK_WORK; mkdir -p "$hdir"
            log "h-big4g: not enough room in tmpfs for 2 x 4 GiB; using $hdir ($(fstype "$hdir"))"
        fi
        desc="initial copy, one $(numfmt --to=iec-i --suffix=B "$BIG4_SIZE") file, for the peak RSS (on $(fstype "$hdir"))"
        if fits h-big4g "$desc" 8 "$hdir"; then
            log "generating a $BIG4_SIZE-byte file in $hdir"
            rm -rf "$hdir/big4-src"; $GEN bigfile "$hdir/big4-src/file.bin" "$BIG4_SIZE"
            WORK_SAVED=$WORK; WORK=$hdir
            run_workload h-big4g copy "$desc" "$hdir/big4-src" "" "$RUNS"
            WORK=$WORK_SAVED
            rm -rf "$hdir/big4-src"
        fi
    fi

    if want a-kernel-disk; then
        if [[ -n $KERNEL_SKIP ]]; then skip_workload a-kernel-disk "initial copy on ext4, kernel tree" "$KERNEL_SKIP"
        elif fits a-kernel-disk "initial copy on disk, $KERNEL_DESC" $((2 * KGIB)) "$DISK_WORK"; then
            prepare_disk_kernel
            disk_runs=$RUNS
            [[ $SCALE == full && $disk_runs -lt 5 ]] && disk_runs=5
            WORK_SAVED=$WORK; WORK=$DISK_WORK
            run_workload a-kernel-disk copy "initial copy on $(fstype "$DISK_WORK") \`$DISK_WORK\`, $KERNEL_DESC" \
                "$DISK_WORK/kernel-src" "" "$disk_runs"
            WORK=$WORK_SAVED
        fi
    fi
}

for TRANSPORT in $TRANSPORTS; do
    TRANSPORT_SKIP=""; TRANSPORT_DESC=""
    selected=0
    for w in $ALL_WORKLOADS; do want "$w" && selected=1; done
    ((selected)) || continue
    log "transport $TRANSPORT: setting up"
    "transport_${TRANSPORT}_setup"
    [[ -z $TRANSPORT_SKIP ]] || log "transport $TRANSPORT skipped: $TRANSPORT_SKIP"
    printf '%s\t%s\n' "$TRANSPORT" "${TRANSPORT_SKIP:+skipped: $TRANSPORT_SKIP}${TRANSPORT_SKIP:-$TRANSPORT_DESC}" >>"$TRANSPORTS_TSV"
    run_transport_workloads
    transport_teardown_all
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$FACTS"

# ---------------------------------------------------------------------------------------------
python3 "$HERE/report.py" "$RESDIR" >"$RESDIR/table.md"
cat "$RESDIR/table.md"
[[ -n ${OUT:-} ]] && cp "$RESDIR/table.md" "$OUT"
[[ -n $TMP_WORK ]] || log "raw samples and the table: $RESDIR"
exit 0
}
