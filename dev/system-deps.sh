#!/usr/bin/env bash
# Installs the Debian packages the integration tests need: OpenStack Swift (the test S3 server,
# see dev/swift.ts), memcached, and the real SFTP/SCP clients the tests drive.
# Idempotent; does not touch apt at all when everything is already installed.
set -euo pipefail

packages=(
  swift-proxy swift-account swift-container swift-object memcached
  openssh-client sshpass lftp rclone python3-paramiko haproxy
  openssh-server gnuplot-nox  # the benchmark: the sshd + sftp-server baseline, and its chart
  openssh-sftp-server sshfs fuse3 rsync putty-tools
)

missing=()
for pkg in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
  [ "$status" = installed ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "system-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "system-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi

echo "system-deps: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
