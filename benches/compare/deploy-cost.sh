#!/usr/bin/env bash
# deploy-cost.sh: what the remote install costs, beside rsync, in one run.
#
#   benches/compare/deploy-cost.sh [XSYNC_BIN] [RUNS]
#
# Needs root (it makes a throwaway account and a private sshd on 127.0.0.1), hyperfine,
# rsync, python3. Pushes a small tree (200 files, 2 MB, on /dev/shm) to the account's home
# four ways, each timed by hyperfine with RUNS runs (default 10), the destination emptied
# before each run so that every run sends the tree:
#
#   rsync          rsync -a (rsync preinstalled, as it nearly always is)
#   preinstalled   xsync -a --xsync-path ~/bin/xsync (today's way: xsync copied there)
#   cached         xsync -a, the cache already holding this build (every later run)
#   first contact  xsync -a, the cache emptied first (the upload; once per host and build)
#
# and prints the bytes each way sends (benches/compare/count-bytes), then removes the
# account, the sshd and the scratch directories. DELAY_MS=50 puts benches/compare/delay-relay
# in as ssh's ProxyCommand: a 100 ms round trip.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
XSYNC=${1:-$HERE/../../target/release/xsync}
RUNS=${2:-10}
XSYNC=$(readlink -f "$XSYNC")
[[ $(id -u) == 0 ]] || { echo "deploy-cost.sh: needs root (useradd, sshd)" >&2; exit 1; }
for t in hyperfine rsync python3 /usr/sbin/sshd useradd; do
    command -v "$t" >/dev/null || { echo "deploy-cost.sh: \`$t\` is not installed" >&2; exit 1; }
done

WORK=$(mktemp -d /dev/shm/xsync-deploy-cost.XXXXXX)
chmod 755 "$WORK"
USER_NAME=xsdcost$$
HOMEDIR=$WORK/home
SSHD_PID=
cleanup() {
    [[ -n $SSHD_PID ]] && kill "$SSHD_PID" 2>/dev/null || true
    userdel "$USER_NAME" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

useradd -M -U -p '*' -s /bin/sh -d "$HOMEDIR" "$USER_NAME"
mkdir -p "$HOMEDIR/bin" && cp "$XSYNC" "$HOMEDIR/bin/xsync"
chown -R "$USER_NAME:$USER_NAME" "$HOMEDIR" && chmod 755 "$HOMEDIR"

python3 - "$WORK/src" <<'PY'
import os, random, sys
root = sys.argv[1]
r = random.Random(1)
for d in range(10):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(20):
        with open(f"{root}/d{d}/f{f}.txt", "wb") as fh:
            fh.write(bytes(r.getrandbits(8) for _ in range(10_000)))
PY

KEYS=$WORK/keys
mkdir -p "$KEYS" && chmod 711 "$KEYS"
ssh-keygen -q -t ed25519 -N '' -f "$KEYS/host_key" </dev/null
ssh-keygen -q -t ed25519 -N '' -f "$KEYS/user_key" </dev/null
cp "$KEYS/user_key.pub" "$KEYS/authorized_keys" && chmod 644 "$KEYS/authorized_keys"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$KEYS/sshd_config" <<CONFIG
Port $PORT
ListenAddress 127.0.0.1
HostKey $KEYS/host_key
PidFile $KEYS/sshd.pid
AuthorizedKeysFile $KEYS/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100
LogLevel ERROR
CONFIG
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f "$KEYS/sshd_config" </dev/null 2>>"$KEYS/sshd.log" &
SSHD_PID=$!
SSH="ssh -p $PORT -i $KEYS/user_key -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR"
if [[ -n ${DELAY_MS:-} ]]; then
    # Double quotes: rsync's -e splitting honours quotes (not backslashes), as xsync's does.
    SSH="$SSH -o \"ProxyCommand=$HERE/delay-relay $DELAY_MS %h %p\""
fi
for _ in $(seq 50); do bash -c "$SSH -l $USER_NAME 127.0.0.1 true" </dev/null 2>/dev/null && break; sleep 0.1; done

DST="$USER_NAME@127.0.0.1:$HOMEDIR/dst/"
EMPTY="rm -rf $HOMEDIR/dst"
NOCACHE="rm -rf $HOMEDIR/dst $HOMEDIR/.cache/xsync"
export XSYNC_NO_DEPLOY=
# One install, so that `cached` finds the build.
"$XSYNC" -a -q -e "$SSH" "$WORK/src/" "$DST"

echo "# deploy-cost: $(basename "$XSYNC") $(stat -c %s "$XSYNC") bytes, $(rsync --version | head -1)"
hyperfine -N --runs "$RUNS" --export-markdown "$WORK/table.md" \
    --prepare "$EMPTY" -n rsync "rsync -a -e '$SSH' $WORK/src/ $DST" \
    --prepare "$EMPTY" -n preinstalled "$XSYNC -a -e '$SSH' --xsync-path $HOMEDIR/bin/xsync $WORK/src/ $DST" \
    --prepare "$EMPTY" -n cached "$XSYNC -a -e '$SSH' $WORK/src/ $DST" \
    --prepare "$NOCACHE" -n 'first contact' "$XSYNC -a -q -e '$SSH' $WORK/src/ $DST"
cat "$WORK/table.md"

echo
echo "| way | bytes sent by the client | received |"
echo "|---|---:|---:|"
bytes() { # bytes NAME PREPARE CMD...
    local name=$1 prep=$2; shift 2
    bash -c "$prep"
    rm -f "$WORK/bytes"
    COUNT_BYTES_OUT=$WORK/bytes "$@" >/dev/null
    awk -v n="$name" '{s+=$1; r+=$2} END {printf "| %s | %d | %d |\n", n, s, r}' "$WORK/bytes"
}
CB="$HERE/count-bytes $SSH"
bytes rsync "$EMPTY" rsync -a -e "$CB" "$WORK/src/" "$DST"
bytes preinstalled "$EMPTY" "$XSYNC" -a -e "$CB" --xsync-path "$HOMEDIR/bin/xsync" "$WORK/src/" "$DST"
bytes cached "$EMPTY" "$XSYNC" -a -e "$CB" "$WORK/src/" "$DST"
bytes "first contact" "$NOCACHE" "$XSYNC" -a -q -e "$CB" "$WORK/src/" "$DST"
