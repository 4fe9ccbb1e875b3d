#!/usr/bin/env bash
# `make deb`: build dist/agtap_<version>_amd64.deb (+ .buildinfo, .changes).
# Builds from a copy of the committed-or-not working tree (tracked and
# untracked-but-not-ignored files), so the checkout is never littered with
# debian/agtap/, .pybuild/, build/ and the like. Then runs lintian on the result.
#   AGTAP_DEB_STRICT=1  a file the package should ship but the tree lacks is fatal
#   LINTIAN=0           skip lintian
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# Debian's python3 and tools only: a pyenv/venv python on PATH would build the
# wheel with the wrong interpreter (and lack python3-build).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unset PYTHONPATH VIRTUAL_ENV PYTHONHOME
missing=()
for c in dpkg-buildpackage dh dh_python3 fakeroot; do command -v "$c" >/dev/null || missing+=("$c"); done
[ -e /usr/share/perl5/Debian/Debhelper/Buildsystem/pybuild.pm ] || missing+=(dh-python)
[ -e /usr/share/dh-python/dhpython/build/plugin_pyproject.py ] || missing+=(pybuild-plugin-pyproject)
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-deb: missing: ${missing[*]}" >&2
  echo "build-deb: sudo apt-get install debhelper dh-python pybuild-plugin-pyproject python3-all python3-setuptools fakeroot lintian" >&2
  exit 1
fi
arch=$(dpkg --print-architecture)
if [ "$arch" != amd64 ]; then
  # bpf/syscalls.c and agtap/capture/probepoints.py are x86-64's (docs/DESIGN.md)
  echo "build-deb: agtap is built for amd64 only (this machine is $arch)" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/agtap-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/agtap"
# Every file git knows or would add (not ignored ones: .venv, node_modules, dist).
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] || [ -L "$f" ] || continue          # deleted but still in the index
  printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$work/agtap"
cd "$work/agtap"
start=$(date +%s)
dpkg-buildpackage -us -uc -b 2>&1 | tee "$work/build.log" | sed 's/^/  /' >&2 || {
  echo "build-deb: dpkg-buildpackage failed (log above)" >&2; exit 1; }
mkdir -p "$root/dist"
shopt -s nullglob
arts=("$work"/agtap_*.deb "$work"/agtap_*.buildinfo "$work"/agtap_*.changes)
mv -f "${arts[@]}" "$root/dist/"
deb=$(ls -t "$root"/dist/agtap_*_amd64.deb | head -1)
echo "build-deb: $deb ($(( $(date +%s) - start ))s)"
if [ "${LINTIAN:-1}" != 0 ] && command -v lintian >/dev/null; then
  changes=$(ls -t "$root"/dist/agtap_*.changes | head -1)
  # errors fail the build; warnings are printed
  lintian --fail-on error --info --suppress-tags-from-file /dev/null "$changes" >&2 || {
    echo "build-deb: lintian reported errors" >&2; exit 1; }
fi
