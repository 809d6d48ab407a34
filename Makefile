# lamina: every target installs what it needs on a fresh Debian machine (as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEB_PACKAGES := busybox-static strace docker-registry apache2-utils graphviz skopeo umoci gcc libc6-dev \
	libseccomp2 keyutils nftables iproute2 docker-compose tini systemd logrotate postgresql \
	systemd-container
PYTEST_ARGS ?=
# The suite runs on pytest-xdist workers, a test file's tests on one worker (its module
# fixtures start once). Three on this 2-core machine: the run is mostly CPU, but its tests
# also wait (their containers, sleeps, fsyncs), and a third worker fills a core the other
# two leave idle meanwhile (`.ci/run` 899 s with two, 806 s with three, one after the
# other on 2026-12-07). The files are handed out in the order tests/conftest.py gives them
# (the longest first), not xdist's (the most tests first). PYTEST_WORKERS=0 runs it in this
# one process (to debug).
# docs/architecture.md says what a test must respect to run beside others.
PYTEST_WORKERS ?= 3
XDIST = -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: all demo test in-process unit lint docs bench deb pyc client joiner probes clean compat

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,docs]' --config-settings editable_mode=compat
	touch $(STAMP)

# Debian packages the tests and the demo use; installed only when missing.
deb:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@# the Docker API service's tests drive it with a docker CLI: Debian's when none is here
	@command -v docker >/dev/null || { echo "installing docker.io (a docker CLI)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null; }

# Bytecode for lamina's own modules: the environment may forbid writing it on import
# (PYTHONDONTWRITEBYTECODE), and recompiling every module costs each command ~60 ms.
pyc: $(STAMP)
	@$(BIN)/python -m compileall -q core events adapters >/dev/null

# The native client (adapters/fastpath/client.c) in place of the Python one pip installed as
# bin/lamina: the same protocol to `lamina serve`'s fork server, without an interpreter's
# ~14 ms start; with no server it runs the command in this venv's Python.
client: $(STAMP) deb
	@cc -O2 -Wall -Wextra -DLAMINA_PYTHON='"$(abspath $(BIN))/python3"' \
	  -o $(BIN)/lamina.new adapters/fastpath/client.c && mv $(BIN)/lamina.new $(BIN)/lamina

# An exec's joiner and a container's init (adapters/runtime/joiner.c, init.c) as the venv's
# bin/lamina-join: it joins the container and execs the process for exec's command, or
# builds a new container's root and execs its process for the monitor, which start it with
# posix_spawn instead of forking their Python; static, since it runs on in the container's
# mount namespace. Without it both fork Python as before (nativejoin.py, nativeinit.py).
NATIVE = adapters/runtime/joiner.c adapters/runtime/init.c
joiner: $(BIN)/lamina-join
$(BIN)/lamina-join: $(NATIVE) adapters/runtime/joiner.h | $(STAMP) deb
	cc -static -O2 -Wall -Wextra -o $@.new $(NATIVE) && mv $@.new $@

# The isolation probes (tests/probes/probe.c): one static binary that tries, from inside a
# container, everything a container must not do; static so it runs in any image.
probes: $(VENV)/probe
$(VENV)/probe: tests/probes/probe.c | $(STAMP) deb
	cc -static -O2 -Wall -Wextra -o $@.new $< && mv $@.new $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# What needs no root, in under a minute: the unit tests (the kernel adapters' among them,
# through the recording double of adapters/kernel/syscalls.py), the model tests and the
# registry's pure ones. `make test` runs everything.
unit: $(STAMP)
	$(BIN)/pytest -q $(XDIST) -m "not kernel" $(PYTEST_ARGS) tests/unit tests/contracts tests/model \
	  tests/registry/test_pure.py

# The suite runs every command the way a user's run by default: the first command of each
# test root starts its fork server and every later one runs in a pre-forked child of it,
# through the native client (tests/conftest.py). The in-process pass runs the everyday
# lifecycle (run, start, stop, kill, pause, exec, logs, restart policies, a reboot's
# recovery) once more with every command in a fresh interpreter, as `--no-server` and
# LAMINA_NO_SERVER=1 run them (LAMINA_TEST_IN_PROCESS=1); the fault injection's suites run
# in-process in the first pass already (tests/conftest.py in_process_environment). ~95 s on 2 cores. `make in-process` runs only it.
IN_PROCESS_TESTS ?= $(addprefix tests/kernel/,test_runtime.py test_restart.py test_reconcile.py)
IN_PROCESS_PASS = LAMINA_TEST_IN_PROCESS=1 $(BIN)/pytest -q $(XDIST) $(IN_PROCESS_TESTS)

test: $(STAMP) deb pyc client joiner probes lint
	$(BIN)/pytest -q $(XDIST) $(PYTEST_ARGS)
	$(IN_PROCESS_PASS)

in-process: $(STAMP) deb pyc client joiner probes
	$(IN_PROCESS_PASS)

demo: $(STAMP) deb pyc client joiner
	$(BIN)/python -m tools.demo

docs: $(STAMP) deb
	$(BIN)/python -m tools.docs

# docker-py's own integration tests against a docker daemon here and against `lamina serve`,
# each in namespaces of its own; writes the tally into docs/compatibility.md. Minutes: not
# part of `make test`. docker-py's tests come from a git clone of it (COMPAT_ARGS="--docker-py
# PATH" or DOCKERPY_REPO; PyPI's sdist ships none). COMPAT_ARGS="--files api_exec_test --no-docs"
# runs a part.
COMPAT_ARGS ?=
compat: $(STAMP) deb pyc client joiner
	$(BIN)/python -m tools.dockerpy_compat $(COMPAT_ARGS)

bench: $(STAMP) deb pyc client joiner
	$(BIN)/python bench/eventlog.py
	$(BIN)/python bench/lifecycle.py
	$(BIN)/python bench/storage.py
	$(BIN)/python bench/build.py
	$(BIN)/python bench/service.py
	$(BIN)/python bench/registry.py
	$(BIN)/python bench/network.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache

# `make install`: the native client as $(PREFIX)/bin/lamina (it runs this checkout's venv
# Python: keep the checkout), lamina.socket + lamina.service (socket activation of the
# Docker API on /run/lamina.sock and of the command's fork server on $(LAMINA_ROOT)/cli.sock),
# lamina-shutdown.service (the host's shutdown stops the containers), a logrotate file for
# serve.log, and the group lamina (members may use the API socket: they are root's equals).
# With DESTDIR (staging a package) nothing outside DESTDIR is touched: no group, no
# systemctl. Only lamina-shutdown.service is enabled and started (it runs nothing until the
# machine goes down); docs/operations.md says how to enable the others. `make uninstall`
# disables it without stopping it: that would stop the containers.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
UNITDIR ?= $(PREFIX)/lib/systemd/system
LOGROTATEDIR ?= /etc/logrotate.d
LAMINA_ROOT ?= /var/lib/lamina
INSTALLED := $(DESTDIR)$(BINDIR)/lamina $(DESTDIR)$(UNITDIR)/lamina.socket \
	$(DESTDIR)$(UNITDIR)/lamina.service $(DESTDIR)$(UNITDIR)/lamina-shutdown.service \
	$(DESTDIR)$(LOGROTATEDIR)/lamina
RENDER = sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@ROOT@|$(LAMINA_ROOT)|g' \
	-e 's|@DOCDIR@|$(abspath docs)|g'

install: client joiner
	install -D -m 0755 $(BIN)/lamina $(DESTDIR)$(BINDIR)/lamina
	install -d -m 0755 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(LOGROTATEDIR)
	$(RENDER) dist/lamina.socket.in > $(DESTDIR)$(UNITDIR)/lamina.socket
	$(RENDER) dist/lamina.service.in > $(DESTDIR)$(UNITDIR)/lamina.service
	$(RENDER) dist/lamina-shutdown.service.in > $(DESTDIR)$(UNITDIR)/lamina-shutdown.service
	$(RENDER) dist/lamina.logrotate.in > $(DESTDIR)$(LOGROTATEDIR)/lamina
	chmod 0644 $(DESTDIR)$(UNITDIR)/lamina.socket $(DESTDIR)$(UNITDIR)/lamina.service \
	  $(DESTDIR)$(UNITDIR)/lamina-shutdown.service $(DESTDIR)$(LOGROTATEDIR)/lamina
	@if [ -z "$(DESTDIR)" ]; then \
	  getent group lamina >/dev/null || groupadd --system lamina; \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; \
	  systemctl enable --now --quiet lamina-shutdown.service; \
	  echo "start it: systemctl enable --now lamina.socket lamina.service"; \
	  else echo "systemd is not running here: no units started"; fi; fi

uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
	  systemctl disable --now lamina.service lamina.socket 2>/dev/null || true; \
	  systemctl disable --quiet lamina-shutdown.service 2>/dev/null || true; fi
	rm -f $(INSTALLED)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "kept: the group lamina and $(LAMINA_ROOT) (containers, images, the log)"
