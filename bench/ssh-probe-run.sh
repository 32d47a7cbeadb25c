#!/bin/bash
# One round of the SSH receive-path probe: starts bench/ssh-probe.cjs with the given environment,
# times an OpenSSH sftp put and get of PROBE_FILE (default: 256 MiB made once in /tmp), prints MiB/s
# and the probe's CPU seconds. Alternate configurations yourself, e.g.
#   for r in 1 2 3; do bench/ssh-probe-run.sh node chacha20-poly1305@openssh.com
#                      bench/ssh-probe-run.sh node chacha20-poly1305@openssh.com PROBE_WINDOW=8388608; done
# usage: ssh-probe-run.sh NODE CIPHER [VAR=value...]   (SFTPOPTS="-R 128" passes client options)
set -euo pipefail
NODE=$1; CIPHER=$2; shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
FILE=${PROBE_FILE:-/tmp/ssh-probe-256.bin}
[ -f "$FILE" ] || head -c $((256 * 1024 * 1024)) /dev/urandom > "$FILE"
MIB=$(( $(stat -c %s "$FILE") / 1024 / 1024 ))
OUT=$(mktemp)
env "$@" "$NODE" "$HERE/ssh-probe.cjs" > "$OUT" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$OUT" "$OUT.back"' EXIT
for _ in $(seq 100); do [ -s "$OUT" ] && break; sleep 0.1; done
read -r PORT DIR < "$OUT"
SFTP=(sftp -q ${SFTPOPTS:-} -c "$CIPHER" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -P "$PORT" -b - x@127.0.0.1)
S=$(date +%s.%N)
echo "put $FILE up.bin" | "${SFTP[@]}" > /dev/null
M=$(date +%s.%N)
echo "get up.bin $OUT.back" | "${SFTP[@]}" > /dev/null
E=$(date +%s.%N)
CPU=$(awk '{print ($14 + $15) / 100}' "/proc/$PID/stat")
rm -rf "$DIR"
echo "$("$NODE" -v) $CIPHER $* put $(echo "$MIB / ($M - $S)" | bc -l | cut -c1-5) MiB/s get $(echo "$MIB / ($E - $M)" | bc -l | cut -c1-5) MiB/s cpu ${CPU}s"
