#!/usr/bin/env bash
# Installs what turnout needs on Debian 12 and builds libevhtp 1.2.18 from
# Debian's original source tarball, with the project's patches, as a static
# library under build/deps. Idempotent: a second run takes seconds.
# The machine's apt configuration is left alone: the deb-src line lives in a
# private sources list under build/apt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
deps=$root/build/deps
aptdir=$root/build/apt
packages=(build-essential pkg-config cmake curl ca-certificates dpkg-dev
          libevent-dev libcurl4-openssl-dev libssl-dev libcjson-dev liblmdb-dev lmdb-utils python3
          systemd man-db wrk prometheus clang libfuzzer-14-dev
          chromium chromium-driver python3-selenium
          etcd-server redis-server libhiredis-dev)
# wrk drives the reload-under-load test; prometheus is there for promtool,
# which checks /metrics (its server is not started by this install); clang and
# libfuzzer-14-dev build the libFuzzer drivers `make test` runs (test/fuzz).
# chromium, chromium-driver and python3-selenium run the dashboard's browser
# tests (test/browser) headless. etcd-server and redis-server are the cluster
# tests' store of record and shared counters (started by the tests on free
# loopback ports, never as services); libhiredis-dev is the Redis client.

say() { echo "install-deps: $*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # no service a package brings (prometheus) is started by installing it
    guard=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        guard=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" || rc=$?
    [ -n "$guard" ] && as_root rm -f /usr/sbin/policy-rc.d
    [ "${rc:-0}" -eq 0 ] || exit "$rc"
fi

# Node.js and the official SDKs the tests drive turnout with (test/sdk,
# pinned by its package-lock.json). A machine with a Node.js of its own that
# brings npm keeps it; otherwise Debian's.
if ! command -v npm >/dev/null 2>&1; then
    say "installing nodejs npm"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi
sdk_want=$(sha256sum "$root/test/sdk/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$root/test/sdk/node_modules/.turnout-stamp" 2>/dev/null)" != "$sdk_want" ]; then
    say "installing the SDKs of test/sdk (npm ci)"
    (cd "$root/test/sdk" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    echo "$sdk_want" > "$root/test/sdk/node_modules/.turnout-stamp"
fi

# The stamp names the tarball and every patch, so a changed patch rebuilds.
patches=$(ls "$root"/scripts/patches/*.patch 2>/dev/null | sort || true)
want=$(cat "$root/scripts/install-deps.sh" $patches | sha256sum | cut -d' ' -f1)
if [ -f "$deps/.stamp" ] && [ "$(cat "$deps/.stamp")" = "$want" ] && [ -f "$deps/lib/libevhtp.a" ]; then
    exit 0
fi

tarball=$aptdir/libevhtp_1.2.18.orig.tar.gz
if [ ! -s "$tarball" ]; then
    say "fetching libevhtp 1.2.18's original source tarball through a private apt sources list"
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/etc"
    # Reuse the machine's mirror (first URI of its Debian sources) for deb-src.
    mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
             grep -v security | head -1 | awk '{print $2}' || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    if [ -f "$keyring" ]; then signed="[signed-by=$keyring] "; else signed=""; fi
    echo "deb-src $signed$mirror bookworm main" > "$aptdir/etc/sources.list"
    aptopts=(-o "Dir::Etc::SourceList=$aptdir/etc/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
             -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
             -o "Dir::State::Status=/var/lib/dpkg/status" -o "APT::Sandbox::User=root")
    as_root apt-get "${aptopts[@]}" update -q >/dev/null
    # Only the original tarball is needed (and the Debian diff may not be
    # served): a failure after it arrived is fine.
    (cd "$aptdir" && as_root apt-get "${aptopts[@]}" source --download-only libevhtp=1.2.18-2 >/dev/null 2>&1) || true
    [ -s "$tarball" ] || { say "could not download libevhtp_1.2.18.orig.tar.gz"; exit 1; }
fi

say "building libevhtp 1.2.18 (static) with $(echo "$patches" | grep -c . || true) patch(es)"
rm -rf "$deps/src" "$deps/lib" "$deps/include"
mkdir -p "$deps/src"
tar -xzf "$tarball" -C "$deps/src"
src=$(find "$deps/src" -maxdepth 1 -mindepth 1 -type d | head -1)
for p in $patches; do
    say "applying $(basename "$p")"
    patch -d "$src" -p1 --quiet < "$p"
done
log=$deps/src/build.log
if ! { cmake -Wno-dev -S "$src" -B "$deps/src/build" -DCMAKE_BUILD_TYPE=Release \
         -DCMAKE_C_FLAGS="-O2 -g -fPIC" -DEVHTP_DISABLE_SSL=ON -DEVHTP_DISABLE_REGEX=ON \
         -DEVHTP_DISABLE_EVTHR=ON -DBUILD_SHARED_LIBS=OFF -DEVHTP_BUILD_SHARED=OFF \
         -DCMAKE_INSTALL_PREFIX="$deps" &&
       cmake --build "$deps/src/build" -j"$(nproc)" &&
       cmake --install "$deps/src/build"; } >"$log" 2>&1; then
    tail -40 "$log"
    say "building libevhtp failed (full log: $log)"
    exit 1
fi
[ -f "$deps/lib/libevhtp.a" ] || { say "libevhtp.a was not built"; exit 1; }
echo "$want" > "$deps/.stamp"
say "libevhtp ready in $deps"
