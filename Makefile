# agtap — the two commands that matter: `sudo make run` and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
ARGS  ?=
BENCH_ARGS ?=

.PHONY: help setup setup-run run test test-unit test-bpf test-system deb install bench fuzz clean

help:
	@echo "make setup        install the Debian/pip/npm packages agtap and its tests need (root for apt)"
	@echo "make setup-run    install only what running agtap needs (root for apt)"
	@echo "sudo make run     set up what running needs, then run the tracer in the foreground (ARGS='-v -c python3')"
	@echo "make test         the whole suite: unit, then (as root) bpf and system tiers"
	@echo "make test-unit    parsers and sinks, no root"
	@echo "make test-bpf     root: real BPF on this kernel, official clients against a local fake API"
	@echo "make test-system  root: the .deb in a systemd-nspawn Debian with real systemd and D-Bus"
	@echo "make deb          build dist/agtap_<version>_amd64.deb"
	@echo "sudo make install build the .deb and install it with apt"
	@echo "sudo make bench   benchmarks -> docs/PERFORMANCE.md, bench/results/"
	@echo "make fuzz         long fuzz run: 1M inputs (atheris), results in fuzz/results/last-run.json"

setup:
	@./setup/setup.sh test

setup-run:
	@./setup/setup.sh run

run: setup-run
	@if [ "$$(id -u)" != 0 ]; then echo "make run: the tracer loads BPF programs: run 'sudo make run'" >&2; exit 77; fi
	$(VENV)/bin/agtap $(ARGS)

test: setup test-unit
	@if [ "$$(id -u)" = 0 ]; then \
	  $(MAKE) --no-print-directory test-bpf && $(MAKE) --no-print-directory test-system; \
	else \
	  if [ -n "$$CI" ]; then echo "make test: CI must run as root (bpf and system tiers)" >&2; exit 1; fi; \
	  echo "make test: not root: bpf and system tiers not run (run 'sudo make test')"; \
	fi

test-unit: setup
	$(PY) -m pytest -q tests/unit

test-bpf: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/bpf

test-system: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/system

bench: setup
	@if [ "$$(id -u)" != 0 ]; then echo "make bench: the tracer loads BPF programs: run 'sudo make bench'" >&2; exit 77; fi
	$(PY) -m bench.run $(BENCH_ARGS)

fuzz: setup
	$(PY) -m fuzz.run $(ARGS)

deb:
	./setup/build-deb.sh

install: deb
	@if [ "$$(id -u)" != 0 ]; then echo "make install: run 'sudo make install'" >&2; exit 77; fi
	apt-get -o DPkg::Lock::Timeout=600 install -y "$$(ls -t $(CURDIR)/dist/agtap_*_amd64.deb | head -1)"

clean:
	rm -rf build dist *.egg-info .pytest_cache
