#!/usr/bin/env bash
# Server CPU seconds for one OpenSSH sftp put and get through `make run`'s demo (local Swift), for one
# or more checkouts, alternated round by round:  bench/cpu-ab.sh [-n ROUNDS] [-m MIB] ROOT [ROOT...]
# CPU is user+sys of the server process (/proc/PID/stat) during each transfer; loopback only.
# S3SFTP_DEMO_NODE_ARGS passes flags to the server (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof").
set -euo pipefail
rounds=3 mib=256
while getopts n:m: opt; do case $opt in n) rounds=$OPTARG ;; m) mib=$OPTARG ;; *) exit 2 ;; esac; done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-n ROUNDS] [-m MIB] ROOT [ROOT...]" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$("$here/scripts/ensure-node.sh"):$PATH"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
head -c $((mib * 1024 * 1024)) /dev/urandom > "$work/file"
port=23000
one() { # ROOT
  local root=$1 state="$work/state-$port" log="$work/log-$port"
  (cd "$root" && S3SFTP_DEMO_STATE="$state" S3SFTP_DEMO_PORT=$port S3SFTP_DEMO_METRICS_PORT=$((port + 1000)) \
    exec node dev/run.ts > "$log" 2>&1 < /dev/null) &
  local demo=$!
  for _ in $(seq 1 90); do (echo > /dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 1; done
  local pid; pid=$(pgrep -f "$state/config.yaml")
  cpu() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$pid/stat"; }
  local sftp=(sftp -q -P "$port" -i "$state/demo_id_ed25519" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -b -)
  local c0 c1 c2 t0 t1 t2
  c0=$(cpu); t0=$(date +%s.%N)
  echo "put $work/file f" | "${sftp[@]}" demo@127.0.0.1 > /dev/null
  c1=$(cpu); t1=$(date +%s.%N)
  echo "get f $work/back" | "${sftp[@]}" demo@127.0.0.1 > /dev/null
  c2=$(cpu); t2=$(date +%s.%N)
  cmp -s "$work/file" "$work/back" || echo "$root: the file came back different" >&2
  printf '%s put %.1f s cpu %.2f s | get %.1f s cpu %.2f s | load %s\n' "$root" "$(echo "$t1 - $t0" | bc)" \
    "$(echo "$c1 - $c0" | bc)" "$(echo "$t2 - $t1" | bc)" "$(echo "$c2 - $c1" | bc)" "$(cut -d' ' -f1 /proc/loadavg)"
  # The demo stops Swift and exits once its server has exited.
  kill -TERM "$pid" 2> /dev/null || true; wait "$demo" 2> /dev/null || true
  rm -rf "$state" "$work/back"; port=$((port + 1))
}
for _ in $(seq 1 "$rounds"); do for root in "$@"; do one "$(cd "$root" && pwd)"; done; done
