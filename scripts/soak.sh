#!/usr/bin/env bash
# Long runs of the static release binary (see scripts/soak.py for what and
# how): 100,000 checks at a 1 ms interval, 1,000 kill -9 restarts, 1,000
# restarts of a server that crashes at start-up. Takes several minutes; not
# part of `make test`. Builds the release binaries first unless NO_BUILD=1.
# Usage: scripts/soak.sh [--checks N] [--restarts N] [--crashes N] [--phases checks,restarts,crashes] [--json]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${NO_BUILD:-0}" != 1 ]; then
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release \
    --target x86_64-unknown-linux-gnu --bins
fi
exec python3 scripts/soak.py "$@"
