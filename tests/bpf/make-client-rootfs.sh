#!/usr/bin/env bash
# Build (once) a Debian root filesystem that container tests run clients from, with its
# own libssl: bookworm has OpenSSL 3.0, trixie 3.5 (another code layout).
# Usage: make-client-rootfs.sh SUITE [DIR]   (default /var/cache/agtap-test/client-rootfs-SUITE)
# Cached with a stamp holding a hash of this script and the suite: change the package list
# here and the next run rebuilds it. Root only (debootstrap, chroot). Not the system tier's
# rootfs (tests/system/make-rootfs.sh): this one is never booted, only chrooted/nspawned.
set -euo pipefail
suite=${1:?usage: make-client-rootfs.sh bookworm|trixie [DIR]}
dest=${2:-/var/cache/agtap-test/client-rootfs-$suite}
mirror=${AGTAP_TEST_MIRROR:-http://deb.debian.org/debian}
# python3 + ca-certificates: stdlib TLS clients; python3-pip: the official Anthropic SDK
# from PyPI (the version the host's tests pin); procps for debugging a failed run.
include=python3,python3-pip,ca-certificates,procps
sdk=anthropic==2.14.0
stamp_want=$( (cat "$0"; echo "$suite") | sha256sum | cut -c1-16)
if [ -f "$dest/.agtap-rootfs-stamp" ] && [ "$(cat "$dest/.agtap-rootfs-stamp")" = "$stamp_want" ]; then
  echo "client rootfs: cached at $dest"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "make-client-rootfs: needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "make-client-rootfs: debootstrap missing (apt install debootstrap)" >&2; exit 1; }
tmp="$dest.new.$$"
cleanup() { umount "$tmp/proc" 2>/dev/null || true; rm -rf "$tmp"; }
rm -rf "$tmp"; mkdir -p "$(dirname "$dest")"
trap cleanup EXIT
debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror"
# The SDK's wheels are fetched by the host's pip (its index and CA settings), for the root's
# Python, then installed offline in the root.
pyver=$(chroot "$tmp" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
mkdir -p "$tmp/tmp/wheels"
python3 -m pip download -q --dest "$tmp/tmp/wheels" --only-binary=:all: --python-version "$pyver" \
  --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "$sdk"
mount -t proc proc "$tmp/proc"
chroot "$tmp" python3 -m pip install -q --no-index --find-links /tmp/wheels --no-cache-dir \
  --root-user-action=ignore --break-system-packages "$sdk"
umount "$tmp/proc"
rm -rf "$tmp/tmp/wheels"
chroot "$tmp" apt-get clean
echo "$stamp_want" > "$tmp/.agtap-rootfs-stamp"
rm -rf "$dest"; mv "$tmp" "$dest"; trap - EXIT
echo "client rootfs: built at $dest"
