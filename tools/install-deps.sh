#!/usr/bin/env bash
# Install the Debian packages hakmem's build, tests and benchmarks need:
# only what is missing, so a second run costs one dpkg query.
set -euo pipefail
pkgs=(build-essential pkg-config zstd libzstd-dev libcmocka-dev libdw-dev libelf-dev
      liblttng-ust-dev lttng-tools babeltrace2 libbabeltrace2-dev
      libmimalloc-dev libjemalloc-dev libgoogle-perftools-dev heaptrack
      clang libclang-rt-14-dev python3 perl git gcc chromium)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "hakmem: installing ${missing[*]}" >&2
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
