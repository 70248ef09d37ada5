#!/usr/bin/env bash
# Runs the whole quorumlb test suite: installs what the tests need (Debian
# packages: namespaces/nftables tools, Chromium for the admin panel), then builds
# and runs every test of the workspace. CI runs exactly this (see .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=(iproute2 nftables iputils-arping iputils-ping procps chromium chromium-driver)
missing=()
for p in "${need_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "== installing with sudo: ${missing[*]}"
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "!! WARNING: cannot install ${missing[*]} (not root, no sudo): tests that need them will print SKIPPED" >&2
  fi
fi

if [ "$(id -u)" != 0 ]; then
  echo "!! WARNING: not root: the VIP, fencing and failover tests need root and will print SKIPPED" >&2
fi

echo "== building"
cargo build --workspace --all-targets --locked
echo "== testing"
cargo test --workspace --locked -- --test-threads="${QLB_TEST_THREADS:-4}"
echo "== all tests passed"
