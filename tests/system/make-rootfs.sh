#!/usr/bin/env bash
# Build (once) a Debian rootfs the system tier boots with systemd-nspawn.
# Usage: make-rootfs.sh SUITE DIR   (SUITE: bookworm = Debian 12, trixie = Debian 13;
#        default DIR /var/cache/agtap-test/rootfs-SUITE)
# The rootfs is cached with a stamp file holding a hash of this script and the suite:
# change the package list here and the next run rebuilds it. Root only (debootstrap, chroot).
set -euo pipefail
suite=${1:-bookworm}
case "$suite" in bookworm|trixie) ;; *) echo "make-rootfs: unknown suite '$suite' (bookworm or trixie)" >&2; exit 2;; esac
dest=${2:-/var/cache/agtap-test/rootfs-$suite}
mirror=${AGTAP_TEST_MIRROR:-http://deb.debian.org/debian}
# systemd as PID 1 with journald and a system bus; polkit (polkitd + pkexec, on both suites);
# python3 + ca-certificates for the client calls; tmux for agtap-tui; sudo/util-linux for
# running commands as other users. The agtap runtime dependencies are NOT here: the test
# installs the .deb with apt, which resolves them from Debian inside the container.
include=systemd,systemd-sysv,dbus,man-db,dbus-user-session,libpam-systemd,polkitd,pkexec,python3,curl,ca-certificates,tmux,sudo,procps,iproute2,less,openssl
stamp_want=$( (cat "$0"; echo "$suite") | sha256sum | cut -c1-16)
if [ -f "$dest/.agtap-rootfs-stamp" ] && [ "$(cat "$dest/.agtap-rootfs-stamp")" = "$stamp_want" ]; then
  echo "rootfs: cached at $dest"; exit 0
fi
[ "$(id -u)" = 0 ] || { echo "make-rootfs: needs root" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "make-rootfs: debootstrap missing (apt install debootstrap)" >&2; exit 1; }
tmp="$dest.new.$$"
rm -rf "$tmp"; mkdir -p "$(dirname "$dest")"
trap 'rm -rf "$tmp"' EXIT
debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror"
cat > "$tmp/etc/apt/sources.list" <<SRC
deb $mirror $suite main
deb $mirror $suite-updates main
deb http://deb.debian.org/debian-security $suite-security main
SRC
echo agtap-test > "$tmp/etc/hostname"
printf '127.0.0.1 localhost agtap-test\n::1 localhost\n' > "$tmp/etc/hosts"
# Root has no password; the console is not used (commands run through nsenter).
chroot "$tmp" passwd -d root >/dev/null
# Fewer units that cannot work in a container and only slow the boot (trixie runs
# systemd-modules-load under --capability=all and it fails: no modules in the container).
for u in systemd-timesyncd.service systemd-modules-load.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
  chroot "$tmp" systemctl mask "$u" >/dev/null 2>&1 || true
done
chroot "$tmp" apt-get -q update
# keep downloaded .debs (the harness bind-mounts a shared archive cache)
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' > "$tmp/etc/apt/apt.conf.d/90agtap-keep"
rm -f "$tmp/etc/apt/apt.conf.d/docker-clean"
chroot "$tmp" apt-get clean
echo "$stamp_want" > "$tmp/.agtap-rootfs-stamp"
rm -rf "$dest"; mv "$tmp" "$dest"; trap - EXIT
echo "rootfs: built at $dest"
