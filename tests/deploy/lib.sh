# Shared by the deployment tests (tests/deploy/*.sh): root check, Debian
# packages, the cached Debian 12 root and the booted container.
# Sourced, not run. Needs: set -euo pipefail in the caller.

die() { echo "FAIL: $*" >&2; exit 1; }
say() { printf '[%4ds] %s\n' "$SECONDS" "$*"; }

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root (systemd-nspawn, debootstrap): run it as root"
}

# need_cmd COMMAND PACKAGE: installs PACKAGE with apt-get when COMMAND is
# missing (apt-get update once); fails clearly when that is not possible.
_apt_updated=
need_cmd() {
  command -v "$1" >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "$1 is missing and there is no apt-get to install $2"
  if [ -z "$_apt_updated" ]; then
    say "apt-get update (to install $2)"
    apt-get update -qq >/dev/null || die "apt-get update failed: cannot install $2 (for $1)"
    _apt_updated=1
  fi
  say "apt-get install $2"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null \
    || die "apt-get install $2 failed (needed for $1)"
  command -v "$1" >/dev/null 2>&1 || die "$2 installed but $1 still missing"
}

# The Debian mirror apt already uses here (deb822 .sources or one-line
# sources.list), never a hard-coded host.
debian_mirror() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    uri=$(awk '
      /^[ \t]*$/ { if (u != "" && s ~ /(^| )bookworm( |$)/ && u !~ /security/) { print u; exit } u=""; s="" }
      /^URIs:/ { u=$2 } /^Suites:/ { $1=""; s=$0 " " }
      END { if (u != "" && s ~ /(^| )bookworm( |$)/ && u !~ /security/) print u }' "$f" | head -1)
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" && $3 == "bookworm" { u=$2; if ($2 ~ /^\[/) { u=$3 } print u; exit }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return 0; }
  done
  die "no Debian bookworm mirror found in /etc/apt/sources.list{,.d}: cannot debootstrap"
}

# ensure_root DIR: a Debian 12 root with systemd (and python3-venv, for an
# app with a venv) in DIR, built once with
# debootstrap (into DIR.tmp, renamed when complete) and reused afterwards.
# The packages of the root; a root built with another list is built again.
ROOT_PACKAGES=systemd,systemd-sysv,dbus,python3-venv
ensure_root() {
  local root=$1 mirror start
  if [ -x "$root/lib/systemd/systemd" ] && [ "$(cat "$root/.complete" 2>/dev/null)" = "$ROOT_PACKAGES" ]; then
    say "cached Debian 12 root: $root"
    return 0
  fi
  need_cmd debootstrap debootstrap
  mirror=$(debian_mirror)
  rm -rf "$root.tmp" "$root"
  mkdir -p "$(dirname "$root")"
  start=$SECONDS
  say "debootstrap bookworm from $mirror into $root (once; cached afterwards)"
  debootstrap --variant=minbase --include="$ROOT_PACKAGES" \
      bookworm "$root.tmp" "$mirror" > "$root.debootstrap.log" 2>&1 \
    || { tail -20 "$root.debootstrap.log" >&2; die "debootstrap failed (log: $root.debootstrap.log)"; }
  # No getty on the pipe console; a machine id so journald keeps a journal.
  rm -f "$root.tmp/etc/machine-id"
  systemd-machine-id-setup --root="$root.tmp" >/dev/null 2>&1 || true
  echo "$ROOT_PACKAGES" > "$root.tmp/.complete"
  mv "$root.tmp" "$root"
  say "root built in $((SECONDS - start)) s"
}

# boot_container ROOT BIND_DIR LOG: boots ROOT with systemd-nspawn, writes on
# a tmpfs overlay (the cached root stays pristine), BIND_DIR read-only at
# /mnt/deploy. Sets CT_NSPAWN_PID and CT_PID1; stop_container ends it.
CT_NSPAWN_PID=
CT_PID1=
boot_container() {
  local root=$1 bind=$2 log=$3 i child state
  need_cmd systemd-nspawn systemd-container
  need_cmd nsenter util-linux
  setsid systemd-nspawn -D "$root" --register=no --keep-unit --console=pipe \
      --volatile=overlay --bind-ro="$bind:/mnt/deploy" -b > "$log" 2>&1 < /dev/null &
  CT_NSPAWN_PID=$!
  for i in $(seq 1 200); do
    child=$(cat /proc/"$CT_NSPAWN_PID"/task/*/children 2>/dev/null | awk '{print $1; exit}')
    # nspawn forks helpers before the container's init execs: wait for systemd.
    if [ -n "$child" ] && [ "$(cat /proc/"$child"/comm 2>/dev/null)" = systemd ]; then
      CT_PID1=$child; break
    fi
    kill -0 "$CT_NSPAWN_PID" 2>/dev/null || { tail -20 "$log" >&2; die "systemd-nspawn exited at once (log: $log)"; }
    sleep 0.1
  done
  [ -n "$CT_PID1" ] || die "no pid 1 under systemd-nspawn after 20 s (log: $log)"
  # Until its bus is up, systemctl cannot even ask: retry, bounded.
  state=
  for i in $(seq 1 120); do
    state=$(timeout 120 nsenter -t "$CT_PID1" -a systemctl is-system-running --wait 2>/dev/null || true)
    case "$state" in running|degraded|maintenance|stopping) break ;; esac
    sleep 0.5
  done
  [ "$state" = running ] || {
    ct systemctl --failed --no-pager >&2 || true
    die "container did not reach 'running' (got '$state'; log: $log)"
  }
}

# ct CMD...: runs CMD inside the container, with a clean environment.
ct() {
  nsenter -t "$CT_PID1" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}

stop_container() {
  [ -n "$CT_NSPAWN_PID" ] || return 0
  if kill -0 "$CT_NSPAWN_PID" 2>/dev/null; then
    # SIGTERM to nspawn = orderly poweroff of the container; then the group.
    kill -TERM "$CT_NSPAWN_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$CT_NSPAWN_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- -"$CT_NSPAWN_PID" 2>/dev/null || true
  fi
  wait "$CT_NSPAWN_PID" 2>/dev/null || true
  CT_NSPAWN_PID=
  CT_PID1=
}
