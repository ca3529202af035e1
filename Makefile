# Omnikiosk: `make demo` runs a whole store on this machine, `make test` passes every test.
# Both install what is missing first (system packages with apt-get, then a .venv), and
# nothing twice: the venv is rebuilt only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT    := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: help demo test deps system-deps browser ops-tools chaos-tools bench chaos fuzz clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

demo: deps  ## run a whole store: broker, online store, hub, two kiosks with edge agents
	$(PY) -m demo run

test: deps browser ops-tools chaos-tools  ## install what is missing, then run every test
	$(PY) -m pytest $(PYTEST_ARGS)

PHOTOS ?= ../shared/data/qr-photos

bench: deps  ## run the benchmarks (prints tables and a JSON line each)
	$(PY) bench/ingest.py
	$(PY) bench/arrival.py
	$(PY) bench/outbox.py
	$(PY) bench/chaos.py
	$(PY) bench/scan.py
	$(PY) bench/analytics.py
	@if [ -d "$(PHOTOS)" ]; then $(PY) bench/readrate.py $(PHOTOS); \
	 else echo "bench/readrate.py skipped: no photos at $(PHOTOS) (set PHOTOS=DIR)"; fi

chaos: deps chaos-tools  ## break the whole store on purpose, every scenario; count what survives (bench/chaos.py --all)
	$(PY) bench/chaos.py --all $(CHAOS_ARGS)

fuzz: deps  ## 100,000 generated inputs for each parser that meets the outside world (bench/fuzz.py)
	$(PY) bench/fuzz.py $(FUZZ_ARGS)

deps: system-deps $(STAMP)  ## install system packages and the venv when missing

system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	{ ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libzbar\.so\.0' || missing="$$missing libzbar0"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends $$missing; \
	fi

browser:  ## Chromium for the page tests (Debian's; test tools cannot download their own here)
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends chromium; }

ops-tools:  ## what `firmware_config validate` runs: systemd-analyze, cloud-init, ansible-playbook
	@missing=""; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v cloud-init >/dev/null 2>&1 || missing="$$missing cloud-init"; \
	command -v ansible-playbook >/dev/null 2>&1 || missing="$$missing ansible-core"; \
	if [ -n "$$missing" ]; then \
	  echo "installing provisioning tools:$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends $$missing; \
	fi

chaos-tools:  ## what the chaos scenarios use: libfaketime (kiosk clocks), mkfs.ext4 (a nearly full disk)
	@missing=""; \
	ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing="$$missing libfaketime"; \
	command -v mkfs.ext4 >/dev/null 2>&1 || [ -x /sbin/mkfs.ext4 ] || missing="$$missing e2fsprogs"; \
	if [ -n "$$missing" ]; then \
	  echo "installing chaos tools:$$missing"; \
	  $(APT) update -qq && $(APT) install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed (found " + sys.version.split()[0] + ")")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	@touch $(STAMP)

clean:  ## remove the venv and the demo's files
	rm -rf $(VENV) var .pytest_cache
