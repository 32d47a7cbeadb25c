#!/usr/bin/env bash
# Does ssh2 sending each 32 KiB READ reply as two SSH packets cost CPU? One `make run` demo server
# (local Swift), one file put once, then OpenSSH sftp gets alternated between -B 32768 (OpenSSH's
# default: a reply is 32,781 bytes, over the 32 KiB packet, so two packets) and -B 32755 (a reply
# fills exactly one packet). Prints wall time, server CPU (/proc/PID/stat) and client CPU per get.
#   bench/read-size-ab.sh [-n ROUNDS] [-m MIB]      (loopback only)
set -euo pipefail
rounds=4 mib=128
while getopts n:m: opt; do case $opt in n) rounds=$OPTARG ;; m) mib=$OPTARG ;; *) exit 2 ;; esac; done
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$("$here/scripts/ensure-node.sh"):$PATH"
work=$(mktemp -d)
port=23500 state="$work/state"
(cd "$here" && S3SFTP_DEMO_STATE="$state" S3SFTP_DEMO_PORT=$port S3SFTP_DEMO_METRICS_PORT=$((port + 1000)) \
  exec node dev/run.ts > "$work/log" 2>&1 < /dev/null) &
demo=$!
trap 'kill -TERM "$(pgrep -f "$state/config.yaml")" 2> /dev/null || true; wait "$demo" 2> /dev/null || true; rm -rf "$work"' EXIT
head -c $((mib * 1024 * 1024)) /dev/urandom > "$work/file"
for _ in $(seq 1 90); do (echo > /dev/tcp/127.0.0.1/$port) 2> /dev/null && break; sleep 1; done
pid=$(pgrep -f "$state/config.yaml")
cpu() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$pid/stat"; }
sftp=(sftp -q -P "$port" -i "$state/demo_id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null)
echo "put $work/file f" | "${sftp[@]}" -b - demo@127.0.0.1 > /dev/null
for _ in $(seq 1 "$rounds"); do
  for size in 32768 32755; do
    c0=$(cpu) t0=$(date +%s.%N)
    client=$({ echo "get f $work/back" | /usr/bin/time -f '%U %S' "${sftp[@]}" -B "$size" -b - demo@127.0.0.1 > /dev/null; } 2>&1 | tail -1)
    c1=$(cpu) t1=$(date +%s.%N)
    cmp -s "$work/file" "$work/back" || echo "-B $size: the file came back different" >&2
    printf -- '-B %s get %.2f s, server cpu %.2f s, client cpu %.2f s, load %s\n' "$size" "$(echo "$t1 - $t0" | bc)" \
      "$(echo "$c1 - $c0" | bc)" "$(echo "$client" | awk '{ print $1 + $2 }')" "$(cut -d' ' -f1 /proc/loadavg)"
    rm -f "$work/back"
  done
done
