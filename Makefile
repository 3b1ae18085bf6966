# server-monitor — the two commands a newcomer needs are `make demo` and `make test`.

CARGO       ?= cargo
TARGET      := x86_64-unknown-linux-gnu
RELEASE_BIN := target/$(TARGET)/release/server-monitor
# Static (glibc linked in; no musl target here) and not position-independent:
# no run-time relocations, 110 KiB smaller. No .eh_frame_hdr (47 KB): it is
# the unwinder's index, and nothing unwinds in a panic = "abort" binary (a
# panic re-executes the monitor: src/reexec.rs); only a RUST_BACKTRACE
# backtrace is lost.
RELEASE_RUSTFLAGS := -C target-feature=+crt-static -C relocation-model=static -C link-arg=-Wl,--no-eh-frame-hdr
DEMO_PORT   ?= 8000
DEMO_DIR    ?= demo-run
PREFIX      ?= /usr/local
DESTDIR     ?=

.PHONY: demo test test-deps test-systemd test-docker test-nohup release bench compare soak fuzz install deb clean help

help:
	@echo "make demo     run the monitor on the bundled demo server (foreground, Ctrl-C stops)"
	@echo "make test     formatting, clippy and every test"
	@echo "make release  the static release binary ($(RELEASE_BIN))"
	@echo "make test-docker  the Dockerfile and the compose example, run for real (root; tests/deploy/docker.sh)"
	@echo "make test-nohup   the monitor under nohup from a terminal that closes (tests/deploy/nohup.sh)"
	@echo "make bench    measure reaction times, memory and CPU (scripts/bench.sh)"
	@echo "make compare  the same figures beside monit and supervisord + httpok (bench.sh --compare)"
	@echo "make soak     long runs: 100,000 checks, 1,000 restarts; leaks, zombies (scripts/soak.sh)"
	@echo "make fuzz     fuzz the parsers, FUZZ_SECONDS each (scripts/fuzz.sh; needs cargo-fuzz)"
	@echo "make install  the release binary, systemd units and an example env file (PREFIX, DESTDIR)"
	@echo "make deb      the Debian package (dpkg-deb), in DEB_OUT (target/deb)"
	@echo "make test-systemd  boot Debian 12 under systemd-nspawn: the unit and the package (root)"

# The monitor in the foreground, watching the demo server on 127.0.0.1:$(DEMO_PORT).
demo:
	$(CARGO) build --bins
	@mkdir -p $(DEMO_DIR)
	@echo
	@echo "== server-monitor demo: watching http://127.0.0.1:$(DEMO_PORT)/health every 2 s =="
	@echo "In another terminal, break the server and watch the monitor mend it:"
	@echo "  curl 127.0.0.1:$(DEMO_PORT)/crash      # the server exits: restarted at once"
	@echo "  curl 127.0.0.1:$(DEMO_PORT)/hang       # it stops answering: restarted after 3 failed checks"
	@echo "  curl 127.0.0.1:$(DEMO_PORT)/fail       # it answers 503: restarted after 3 failed checks"
	@echo "  curl 127.0.0.1:$(DEMO_PORT)/warn       # healthy, but over the WARN_* thresholds: warnings only"
	@echo "Where to look:"
	@echo "  $(DEMO_DIR)/logs/server_monitor.log   the monitor's JSON log"
	@echo "  $(DEMO_DIR)/logs/server.log           the server's stdout (server_error.log: stderr)"
	@echo "  $(DEMO_DIR)/logs/alerts/              alerts as .eml files (no email configured)"
	@echo "  target/debug/server-monitor status --log-dir $(DEMO_DIR)/logs"
	@echo "Ctrl-C stops the monitor and the server."
	@echo
	cd $(DEMO_DIR) && exec ../target/debug/server-monitor \
		--health-url http://127.0.0.1:$(DEMO_PORT)/health \
		--check-interval 2 --health-timeout 1 --restart-cooldown 10 --log-level debug \
		-- ../target/debug/demo-server --port $(DEMO_PORT) --log-dir demo-logs

test: test-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets
	$(CARGO) test --doc
	$(MAKE) test-systemd test-docker test-nohup

# The deployment paths, for real (they build the static release binaries).
# test-docker needs root: it installs docker.io/docker-compose when missing and
# starts its own dockerd when none answers.
# The status tests (tests/it/status.rs) run promtool and a real Prometheus:
# Debian's `prometheus` package, installed when missing (needs root).
test-deps:
	@command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; }

test-docker:
	tests/deploy/docker.sh

test-nohup:
	tests/deploy/nohup.sh

# The static release binary, size-minded profile (Cargo.toml [profile.release]).
release:
	RUSTFLAGS="$(RELEASE_RUSTFLAGS)" $(CARGO) build --release --target $(TARGET) --bin server-monitor
	@ls -l $(RELEASE_BIN) | awk '{printf "size: %d bytes (%.2f MiB)\n", $$5, $$5/1048576}'
	@file $(RELEASE_BIN) 2>/dev/null || true

bench:
	scripts/bench.sh

# A peer that is not installed is skipped: `scripts/bench.sh --compare --install`
# installs monit (apt-get) and supervisor + superlance (pip, in a venv).
compare:
	scripts/bench.sh --compare

soak:
	scripts/soak.sh

FUZZ_SECONDS ?= 600
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

install: release
	PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) BINARY=$(RELEASE_BIN) scripts/install.sh $(INSTALL_ARGS)

DEB_OUT ?= target/deb
deb: release
	scripts/deb/build.sh $(RELEASE_BIN) $(DEB_OUT)

# Boots a cached Debian 12 root (target/deploy/) with systemd-nspawn; needs root.
test-systemd:
	RELEASE_RUSTFLAGS="$(RELEASE_RUSTFLAGS)" tests/deploy/systemd.sh

clean:
	$(CARGO) clean
	rm -rf $(DEMO_DIR)
