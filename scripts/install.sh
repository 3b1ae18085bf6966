#!/usr/bin/env bash
# Installs server-monitor: the binary, the systemd units and an example env
# file. Works from a clone (after `make release`) or on a host that has only
# the binary and this scripts folder side by side.
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--binary PATH]
#
# PREFIX (default /usr/local) is where the binary goes (PREFIX/bin); DESTDIR
# (default empty) is prepended to every path, for packaging and tests. As
# root without DESTDIR it also creates the `server-monitor` system user and
# runs `systemctl daemon-reload`. An existing env file is never overwritten.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINARY=${BINARY:-}

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --destdir) DESTDIR=$2; shift 2 ;;
    --binary) BINARY=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [ -z "$BINARY" ]; then
  for candidate in "$here/../server-monitor" "$here/server-monitor" \
      "$here/../target/x86_64-unknown-linux-gnu/release/server-monitor"; do
    if [ -f "$candidate" ]; then BINARY=$candidate; break; fi
  done
fi
if [ -z "$BINARY" ] || [ ! -f "$BINARY" ]; then
  echo "install.sh: no server-monitor binary found; run \`make release\` or pass --binary PATH" >&2
  exit 1
fi

bindir="$DESTDIR$PREFIX/bin"
unitdir="$DESTDIR/etc/systemd/system"
confdir="$DESTDIR/etc/server-monitor"

install -d -m 0755 "$bindir" "$unitdir"
install -d -m 0750 "$confdir"
install -m 0755 "$BINARY" "$bindir/server-monitor"
for unit in server-monitor.service server-monitor@.service; do
  # The units name /usr/local/bin; follow PREFIX.
  sed "s|/usr/local/bin/server-monitor|$PREFIX/bin/server-monitor|" "$here/$unit" > "$unitdir/$unit"
  chmod 0644 "$unitdir/$unit"
done
env_file="$confdir/server-monitor.env"
if [ -e "$env_file" ]; then
  echo "kept existing $env_file"
else
  install -m 0600 "$here/server-monitor.env.example" "$env_file"
fi

if [ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ]; then
  if ! id server-monitor >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/server-monitor --shell /usr/sbin/nologin server-monitor
  fi
  chown server-monitor:server-monitor "$env_file"
  chgrp server-monitor "$confdir"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
  fi
fi

echo "installed $bindir/server-monitor ($(wc -c < "$bindir/server-monitor") bytes)"
echo "installed $unitdir/server-monitor.service and server-monitor@.service"
echo "next: edit $env_file, then: systemctl enable --now server-monitor"
