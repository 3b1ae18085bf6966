#!/usr/bin/env bash
# Measures the static release binary from outside (see scripts/bench.py for
# what and how). Builds the release binaries first unless NO_BUILD=1.
# Usage: scripts/bench.sh [--runs N] [--minute SECS] [--heartbeat-only] [--memory-only] [--status-only] [--json]
#        scripts/bench.sh --compare [--install] [--peers ours,monit,supervisor] [--window SECS]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NO_BUILD:-0}" != 1 ]; then
  RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static -C link-arg=-Wl,--no-eh-frame-hdr" cargo build --quiet --release \
    --target x86_64-unknown-linux-gnu --bins
fi
exec python3 scripts/bench.py "$@"
