#!/usr/bin/env bash
# `make setup`: install what agtap needs, and nothing twice.
#   setup/setup.sh run    what running needs: apt [run], .venv with agtap (sudo make run)
#   setup/setup.sh test   the above and the test stack: apt [test], pip test requirements,
#                         the Node SDKs (make setup, make test, CI; the default)
# Idempotent: each step checks before it acts. Needs root for the apt step.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-test}
case "$what" in
  run) sections=" run " ;;
  test) sections=" run test " ;;
  *) echo "usage: setup/setup.sh [run|test]" >&2; exit 2 ;;
esac

want_apt=()
section=""
while read -r line; do
  line=${line%%#*}; line=${line//[[:space:]]/}
  [ -n "$line" ] || continue
  if [[ $line == \[*\] ]]; then section=${line:1:-1}; continue; fi
  [[ $sections == *" $section "* ]] || continue
  dpkg-query -W -f='${Status}' "$line" 2>/dev/null | grep -q "ok installed" || want_apt+=("$line")
done < setup/apt.txt
if [ "$what" = test ]; then
  # Node 20+ for the Node SDK tests: keep the machine's own node (e.g. nodesource) if there is one.
  command -v node >/dev/null 2>&1 || want_apt+=(nodejs npm)
fi

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
# agtap itself, editable; its runtime dependencies are Debian's (above), hence --no-deps.
stamp=.venv/.agtap-setup-run
sum=$(sha256sum pyproject.toml | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
  echo "$sum" > "$stamp"
fi

if [ "$what" = test ]; then
  stamp=.venv/.agtap-setup-test
  sum=$(sha256sum setup/requirements-test.txt | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -r setup/requirements-test.txt
    echo "$sum" > "$stamp"
  fi
  # Node SDKs used by the tests (tests/clients/package.json), installed again when it changes.
  if [ -f tests/clients/package.json ]; then
    npm_sum=$(cat tests/clients/package.json tests/clients/package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
    if [ "$(cat tests/clients/node_modules/.agtap-setup 2>/dev/null)" != "$npm_sum" ]; then
      (cd tests/clients && npm install --no-audit --no-fund --loglevel=error)
      echo "$npm_sum" > tests/clients/node_modules/.agtap-setup
    fi
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
    # The newest Claude Code too, when the registry answers: the bpf and unit tiers test it beside
    # the pinned one (tests/support/npmbins.py reads this record). Offline the record goes and
    # the pinned one alone is tested; an install already cached is kept for the next time.
    newest_file="$agent_cache/claude-code-newest"
    newest=$(timeout 60 npm view --silent @anthropic-ai/claude-code-linux-x64 version 2>/dev/null || true)
    if [[ "$newest" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
      spec="@anthropic-ai/claude-code-linux-x64@$newest"
      dir="$agent_cache/$spec"
      if [ ! -f "$dir/.agtap-installed" ]; then
        echo "setup: npm install $spec (the newest Claude Code, into $dir)"
        rm -rf "$dir" && mkdir -p "$dir"
        npm install --no-audit --no-fund --loglevel=error --prefix "$dir" "$spec" && touch "$dir/.agtap-installed"
      fi
      if [ -f "$dir/.agtap-installed" ]; then echo "$newest" > "$newest_file"; else rm -f "$newest_file"; fi
      echo "setup: newest Claude Code: $newest"
    else
      rm -f "$newest_file"
      echo "setup: npm registry not reachable: the pinned Claude Code alone is tested"
    fi
  fi
fi
echo "setup: ok ($what)"
