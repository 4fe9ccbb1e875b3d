#!/usr/bin/env bash
# Build (once) a Debian root with Debian's own Go toolchain (golang-go), to build the test
# Go programs with that release's Go: trixie (Debian 13) has Go 1.24, the host (Debian 12)
# 1.19. Never booted: tests/support/gobuild.py runs `go build` in it with systemd-nspawn.
# Usage: make-go-rootfs.sh SUITE [DIR]   (default $AGTAP_TEST_CACHE/go-rootfs-SUITE,
#        AGTAP_TEST_CACHE defaulting to /var/cache/agtap-test)
# Cached with a stamp holding a hash of this script and the suite: change the package list
# and the next run rebuilds it. Root only (debootstrap).
set -euo pipefail
suite=${1:?usage: make-go-rootfs.sh bookworm|trixie [DIR]}
dest=${2:-${AGTAP_TEST_CACHE:-/var/cache/agtap-test}/go-rootfs-$suite}
mirror=${AGTAP_TEST_MIRROR:-http://deb.debian.org/debian}
# golang-go pulls the toolchain; the programs use the standard library only (no module
# downloads), so no git and no proxy access is needed.
include=golang-go,ca-certificates
stamp_want=$( (cat "$0"; echo "$suite") | sha256sum | cut -c1-16)
if [ -f "$dest/.agtap-rootfs-stamp" ] && [ "$(cat "$dest/.agtap-rootfs-stamp")" = "$stamp_want" ]; then
  echo "go rootfs: cached at $dest"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "make-go-rootfs: needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "make-go-rootfs: debootstrap missing (apt install debootstrap)" >&2; exit 1; }
tmp="$dest.new.$$"
rm -rf "$tmp"; mkdir -p "$(dirname "$dest")"
trap 'rm -rf "$tmp"' EXIT
debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror"
chroot "$tmp" apt-get clean
# mount points for gobuild.py's nspawn --read-only run: sources, output, Go build cache
mkdir -p "$tmp/agtap/src" "$tmp/agtap/out" "$tmp/agtap/gocache"
head -1 "$tmp/usr/lib/go/VERSION"    # go itself needs /proc, not mounted here
echo "$stamp_want" > "$tmp/.agtap-rootfs-stamp"
rm -rf "$dest"; mv "$tmp" "$dest"; trap - EXIT
echo "go rootfs: built at $dest"
