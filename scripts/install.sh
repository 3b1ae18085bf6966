#!/usr/bin/env bash
# Installs server-monitor: the binary, the systemd units and an env file.
# Works from a clone (after `make release`) or on a host that has only the
# binary and this scripts folder side by side.
#
#   scripts/install.sh [--prefix DIR] [--destdir DIR] [--binary PATH]
#       [--user USER [--group GROUP]] [--workdir DIR] [--instance NAME]
#       [--command 'SERVER COMMAND'] [--health-url URL] [--now]
#
# One command for an app in its own directory, owned by its own user:
#   sudo scripts/install.sh --user chatbot --workdir /srv/chatbot \
#     --command '/srv/chatbot/.venv/bin/uvicorn src.main:app --port 8000' \
#     --health-url http://127.0.0.1:8000/health --now
#
# --user/--workdir write a drop-in (/etc/systemd/system/server-monitor.service.d/
# app.conf, or server-monitor@NAME.service.d/ with --instance NAME) that runs
# monitor and server as USER, in DIR, with DIR writable; the rest of the
# unit's hardening stays. --command/--health-url set SERVER_COMMAND and
# HEALTH_URL in the env file (/etc/server-monitor/server-monitor.env, or
# NAME.env); an existing env file is kept otherwise. --now runs
# `systemctl enable --now` on the unit. PREFIX (default /usr/local) is where
# the binary goes (PREFIX/bin); DESTDIR (default empty) is prepended to every
# path, for packaging. As root without DESTDIR it also creates the
# `server-monitor` system user and runs `systemctl daemon-reload`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINARY=${BINARY:-}
app_user= app_group= workdir= instance= command= health_url= now=

fail() { echo "install.sh: $*" >&2; exit 2; }
value() { [ $# -ge 2 ] && [ -n "$2" ] || fail "$1 needs a value"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) value "$@"; PREFIX=$2; shift 2 ;;
    --destdir) value "$@"; DESTDIR=$2; shift 2 ;;
    --binary) value "$@"; BINARY=$2; shift 2 ;;
    --user) value "$@"; app_user=$2; shift 2 ;;
    --group) value "$@"; app_group=$2; shift 2 ;;
    --workdir) value "$@"; workdir=$2; shift 2 ;;
    --instance) value "$@"; instance=$2; shift 2 ;;
    --command) value "$@"; command=$2; shift 2 ;;
    --health-url) value "$@"; health_url=$2; shift 2 ;;
    --now) now=1; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) fail "unknown argument: $1 (see --help)" ;;
  esac
done

if [ -n "$workdir" ]; then
  case "$workdir" in /*) ;; *) fail "--workdir must be an absolute path, not \`$workdir\`" ;; esac
  case "$workdir" in *[[:space:]]*|*%*) fail "--workdir \`$workdir\`: no spaces or % in the path, please" ;; esac
  workdir=${workdir%/}
fi
if [ -n "$instance" ]; then
  [[ "$instance" =~ ^[A-Za-z0-9_.-]+$ ]] || fail "--instance \`$instance\`: letters, digits, _ . - only"
fi
if [ -n "$app_group" ] && [ -z "$app_user" ]; then fail "--group needs --user"; fi
for v in "$command" "$health_url"; do
  case "$v" in *"'"*|*$'\n'*) fail "--command/--health-url: no single quote or newline, please: $v" ;; esac
done

live=  # installing into this very system (not a DESTDIR tree)
if [ -z "$DESTDIR" ] && [ "$(id -u)" = 0 ]; then live=1; fi

if [ -n "$app_user" ]; then
  if [ -z "$DESTDIR" ]; then
    id "$app_user" >/dev/null 2>&1 \
      || fail "--user $app_user: no such user; create the app's user first (e.g. useradd --system $app_user)"
    [ -n "$app_group" ] || app_group=$(id -gn "$app_user")
    getent group "$app_group" >/dev/null || fail "--group $app_group: no such group"
  else
    [ -n "$app_group" ] || app_group=$app_user
  fi
fi
if [ -n "$workdir" ] && [ -z "$DESTDIR" ] && [ ! -d "$workdir" ]; then
  fail "--workdir $workdir: no such directory (the app's directory must exist)"
fi

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
# Through a temporary name: a running monitor keeps its old binary.
install -m 0755 "$BINARY" "$bindir/.server-monitor.new"
mv -f "$bindir/.server-monitor.new" "$bindir/server-monitor"
for unit in server-monitor.service server-monitor@.service; do
  # The units name /usr/local/bin; follow PREFIX.
  sed "s|/usr/local/bin/server-monitor|$PREFIX/bin/server-monitor|" "$here/$unit" > "$unitdir/$unit"
  chmod 0644 "$unitdir/$unit"
done

if [ -n "$instance" ]; then
  unit="server-monitor@$instance.service"
  env_file="$confdir/$instance.env"
else
  unit="server-monitor.service"
  env_file="$confdir/server-monitor.env"
fi
if [ -e "$env_file" ]; then
  echo "kept existing $env_file"
else
  install -m 0600 "$here/server-monitor.env.example" "$env_file"
  # A new env file names the app's directory, not the example's.
  if [ -n "$workdir" ]; then
    sed -i "s|^SERVER_WORKDIR=.*|SERVER_WORKDIR=$workdir|" "$env_file"
  fi
fi

# set_env KEY VALUE: replaces KEY= in the env file, or appends it. Single
# quotes: the env file takes the value literally.
set_env() {
  local tmp
  tmp=$(mktemp "$env_file.XXXXXX")
  awk -v key="$1" -v line="$1='$2'" '
    $0 ~ "^[ \t]*(export[ \t]+)?" key "=" { if (!done) print line; done=1; next }
    { print } END { if (!done) print line }' "$env_file" > "$tmp"
  chmod 0600 "$tmp"
  mv -f "$tmp" "$env_file"
}
[ -z "$command" ] || set_env SERVER_COMMAND "$command"
[ -z "$health_url" ] || set_env HEALTH_URL "$health_url"

dropin=
if [ -n "$app_user" ] || [ -n "$workdir" ]; then
  dropin="$unitdir/$unit.d/app.conf"
  install -d -m 0755 "$unitdir/$unit.d"
  {
    echo "# Written by scripts/install.sh for the app it watches; rerun install.sh to change it."
    echo "# Everything not loosened here keeps the hardening of the unit."
    echo "[Service]"
    if [ -n "$app_user" ]; then
      echo "# The app's files belong to its user: monitor and server run as that user."
      echo "# The log and state directories are handed to it by systemd at start."
      echo "User=$app_user"
      echo "Group=$app_group"
      echo "# To read its env file in /etc/server-monitor (0750 root:server-monitor)."
      echo "SupplementaryGroups=server-monitor"
    fi
    if [ -n "$workdir" ]; then
      echo "# The server starts in its own directory (SERVER_WORKDIR may say otherwise)."
      echo "WorkingDirectory=$workdir"
      echo "# Loosening ProtectSystem=strict: the app writes in its own directory"
      echo "# (logs/, caches, uploads); every other path stays read-only."
      echo "ReadWritePaths=$workdir"
      case "$workdir" in
        /home/*|/root/*|/root|/run/user/*)
          echo "# Loosening ProtectHome=yes: the app lives under a home directory; homes"
          echo "# become read-only instead of hidden, and only $workdir is writable."
          echo "ProtectHome=read-only" ;;
      esac
    fi
  } > "$dropin"
  chmod 0644 "$dropin"
fi

if [ -n "$live" ]; then
  if ! id server-monitor >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/server-monitor --shell /usr/sbin/nologin server-monitor
  fi
  chgrp server-monitor "$confdir"
  if [ -n "$app_user" ]; then
    chown "$app_user:$app_group" "$env_file"
  elif [ "$(stat -c %U "$env_file")" = root ]; then
    chown server-monitor:server-monitor "$env_file"
  fi
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
  fi
fi

echo "installed $bindir/server-monitor ($(wc -c < "$bindir/server-monitor") bytes)"
echo "installed $unitdir/server-monitor.service and server-monitor@.service"
[ -z "$dropin" ] || echo "installed $dropin"
if [ -n "$now" ]; then
  [ -n "$live" ] || fail "--now needs root and no --destdir"
  systemctl enable --now "$unit"
  systemctl status --no-pager --lines=0 "$unit" || true
else
  echo "next: check $env_file, then: systemctl enable --now ${unit%.service}"
fi
