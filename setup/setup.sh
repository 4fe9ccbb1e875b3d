#!/usr/bin/env bash
# `make setup`: install what agtap needs to run and be tested, and nothing twice.
# Idempotent: each step checks before it acts. Needs root for the apt step.
set -euo pipefail
cd "$(dirname "$0")/.."

want_apt=()
while read -r pkg; do
  pkg=${pkg%%#*}; pkg=${pkg//[[:space:]]/}
  [ -n "$pkg" ] || continue
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || want_apt+=("$pkg")
done < setup/apt.txt
# Node 20+ for the Node SDK tests: keep the machine's own node (e.g. nodesource) if there is one.
command -v node >/dev/null 2>&1 || want_apt+=(nodejs npm)

if [ ${#want_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${want_apt[*]}" >&2
    echo "setup: run 'sudo make setup' (or: sudo apt-get install ${want_apt[*]})" >&2
    exit 1
  fi
  echo "setup: apt-get install ${want_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -q
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${want_apt[@]}"
fi

# The venv sees Debian's python3-bpfcc, dbus-next, systemd... through --system-site-packages.
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.agtap-setup
reqs_sum=$(cat setup/requirements-test.txt pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$reqs_sum" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r setup/requirements-test.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$reqs_sum" > "$stamp"
fi

# Node SDKs used by the tests (tests/clients/package.json), installed once.
if [ -f tests/clients/package.json ] && [ ! -d tests/clients/node_modules ]; then
  (cd tests/clients && npm install --no-audit --no-fund --loglevel=error)
fi
# Real agents for the bpf tier (setup/agents.txt), pinned, cached outside the tree. Root only:
# the cache is under /var/cache, and the tier that runs them needs root anyway.
agent_cache=${AGTAP_AGENT_CACHE:-/var/cache/agtap-test/agents}
if [ "$(id -u)" = 0 ]; then
  while read -r spec; do
    spec=${spec%%#*}; spec=${spec//[[:space:]]/}
    [ -n "$spec" ] || continue
    dir="$agent_cache/$spec"
    [ -f "$dir/.agtap-installed" ] && continue
    echo "setup: npm install $spec (into $dir)"
    rm -rf "$dir" && mkdir -p "$dir"
    npm install --no-audit --no-fund --loglevel=error --prefix "$dir" "$spec"
    touch "$dir/.agtap-installed"
  done < setup/agents.txt
fi
echo "setup: ok"
