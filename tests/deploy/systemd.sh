#!/usr/bin/env bash
# The systemd and Debian-package deployments, for real (`make test-systemd`):
# a Debian 12 root (debootstrap once, cached in target/deploy/bookworm-root)
# booted with systemd-nspawn, the release binary installed the README's way
# (scripts/install.sh --user --workdir ... --now), then the .deb from
# `make deb` installed, upgraded and purged in a fresh boot. Checks go
# through systemctl, journalctl and the files. Needs root; installs
# debootstrap and systemd-container with apt-get when missing. The container
# is stopped, pass or fail. The log of the whole run: target/deploy/systemd.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
top=$(pwd)
source tests/deploy/lib.sh
need_root tests/deploy/systemd.sh

TARGET=x86_64-unknown-linux-gnu
RELEASE_RUSTFLAGS=${RELEASE_RUSTFLAGS:--C target-feature=+crt-static -C relocation-model=static -C link-arg=-Wl,--no-eh-frame-hdr}
work=$top/target/deploy
root=$work/bookworm-root
mkdir -p "$work"
art=$(mktemp -d "$work/art.XXXXXX")
chmod 0755 "$art"
cleanup() { stop_container; rm -rf "$art"; }
trap cleanup EXIT
exec > >(tee "$work/systemd.log") 2>&1
SECONDS=0

# --- build: the release binary, a static demo server, two packages --------
say "build: make release, static demo server, make deb (twice: upgrade)"
make -s release >/dev/null
RUSTFLAGS="$RELEASE_RUSTFLAGS" cargo build -q --release --target "$TARGET" --bin demo-server
rel=target/$TARGET/release
mkdir -p "$art/scripts"
cp "$rel/server-monitor" "$art/server-monitor"
cp "$rel/demo-server" "$art/demo-server"
cp scripts/install.sh scripts/server-monitor.service scripts/server-monitor@.service \
   scripts/server-monitor.env.example "$art/scripts/"
make -s deb DEB_OUT="$art" >/dev/null
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
DEB_VERSION="$version+upgrade1" scripts/deb/build.sh "$rel/server-monitor" "$art" >/dev/null
deb1=server-monitor_${version}_amd64.deb
deb2=server-monitor_${version}+upgrade1_amd64.deb
[ -f "$art/$deb1" ] && [ -f "$art/$deb2" ] || die "make deb did not build $deb1"
say "built: $(wc -c < "$art/server-monitor") bytes binary, $deb1 $(wc -c < "$art/$deb1") bytes"
t_build=$SECONDS

ensure_root "$root"
t_root=$SECONDS

# --- helpers ---------------------------------------------------------------
# wait_until SECONDS DESCRIPTION CMD...: CMD succeeds within SECONDS, or fail.
wait_until() {
  local limit=$1 what=$2 deadline; shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || die "not within ${limit}s: $what"
    sleep 0.2
  done
}
# The container shares the host's network: the servers answer here too.
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true; }
healthy() { [ "$(http_code "http://127.0.0.1:$1/health")" = 200 ]; }
unhealthy() { ! healthy "$1"; }
# A free port on 127.0.0.1 (nothing answers there now).
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    [ "$(http_code "http://127.0.0.1:$p/")" = 000 ] && { echo "$p"; return; }
  done
  die "no free port found"
}
prop() { ct systemctl show -p "$2" --value "$1"; }
# Pids of demo servers in the container (the log-writers are server-monitor).
servers() { ct bash -c 'for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = demo-server ] && echo ${d#/proc/}; done; true'; }
count_servers() { servers | wc -l; }
server_pid() { ct head -1 "${1:-/var/log/server-monitor}/server.pid" 2>/dev/null || true; }
# Debian's minbase has no /bin/kill: bash's builtin, inside the container.
ckill() { ct bash -c 'kill "$@"' kill "$@"; }
pid_gone() { ! ckill -0 "$1" 2>/dev/null; }
main_changed() { local m; m=$(prop server-monitor MainPID); [ "$m" != 0 ] && [ "$m" != "$1" ]; }
server_changed() { local s; s=$(server_pid "$2"); [ -n "$s" ] && [ "$s" != "$1" ] && healthy "$3"; }
is_active() { [ "$(ct systemctl is-active "$1")" = active ]; }
check() { say "ok: $*"; }

# The tuning an operator would put in the env file for a quick test.
tuning() {
  cat <<EOT
CHECK_INTERVAL=1
HEALTH_TIMEOUT=1
RESTART_COOLDOWN=1
STARTUP_TIMEOUT=15
STOP_TIMEOUT=2
SERVICE_NAME="Deploy Test"
EOT
}

# === part 1: install.sh, the hardened unit, an app of its own user ========
boot_container "$root" "$art" "$work/container1.log"
say "container booted (pid 1 = $CT_PID1), system running"
P=$(free_port)
ct useradd --system --user-group --home-dir /srv/app --shell /usr/sbin/nologin app
ct install -d -o app -g app -m 0750 /srv/app
ct install -o app -g app -m 0755 /mnt/deploy/demo-server /srv/app/demo-server
ct install -d -m 0750 /etc/server-monitor
tuning | ct tee /etc/server-monitor/server-monitor.env >/dev/null
ct chmod 0600 /etc/server-monitor/server-monitor.env

say "install.sh --user app --workdir /srv/app --command ... --now (server takes 2 s to answer)"
ct /mnt/deploy/scripts/install.sh --user app --workdir /srv/app \
  --command "/srv/app/demo-server --port $P --log-dir logs --startup-delay 2" \
  --health-url "http://127.0.0.1:$P/health" --now
# Type=notify: `enable --now` returned only once the server answered.
code=$(http_code "http://127.0.0.1:$P/health")
[ "$code" = 200 ] || die "enable --now returned but the server does not answer (HTTP $code): not Type=notify?"
is_active server-monitor || die "server-monitor not active after enable --now"
t0=$(prop server-monitor ExecMainStartTimestampMonotonic)
t1=$(prop server-monitor ActiveEnterTimestampMonotonic)
ready_ms=$(( (t1 - t0) / 1000 ))
[ "$ready_ms" -ge 1800 ] || die "active ${ready_ms} ms after start: before the server's 2 s startup (READY=1 too early)"
check "enable --now: active ${ready_ms} ms after ExecStart, the server answering (Type=notify)"

status=$(ct systemctl status --no-pager --lines=0 server-monitor)
echo "$status" | sed 's/^/    /'
grep -q 'Status: ".*healthy' <<<"$status" || die "systemctl status shows no STATUS line saying healthy"
check "systemctl status shows the monitor's STATUS line"

s1=$(server_pid)
[ -n "$s1" ] || die "no /var/log/server-monitor/server.pid"
[ "$(ct stat -c %U /proc/"$s1")" = app ] || die "server runs as $(ct stat -c %U /proc/"$s1"), not app"
[ "$(ct stat -c %U /proc/"$(prop server-monitor MainPID)")" = app ] || die "the monitor does not run as app"
ct test -d /srv/app/logs || die "the app wrote no /srv/app/logs"
[ "$(ct stat -c %U /srv/app/logs)" = app ] || die "/srv/app/logs not owned by app"
[ -n "$(ct ls /srv/app/logs)" ] || die "/srv/app/logs is empty"
# The demo server, like many apps, only complains on stderr when it cannot log.
if ct grep -qi 'read-only file system' /var/log/server-monitor/server_error.log; then
  die "the app got 'Read-only file system': $(ct tail -1 /var/log/server-monitor/server_error.log)"
fi
check "an app of user app writes /srv/app/logs ($(ct ls /srv/app/logs | tr '\n' ' ')) under the hardened unit"
[ "$(count_servers)" = 1 ] || die "$(count_servers) servers, not 1"

say "kill -9 of the server (pid $s1)"
ckill -9 "$s1"
wait_until 20 "server restarted and healthy after kill -9" server_changed "$s1" /var/log/server-monitor "$P"
eml_ok() { ct bash -c 'grep -l "Restarted Successfully" /var/log/server-monitor/alerts/*.eml'; }
wait_until 20 "a 'Server Restarted Successfully' .eml alert" eml_ok
[ "$(prop server-monitor NRestarts)" = 0 ] || die "systemd restarted the monitor: the monitor should have mended it"
[ "$(count_servers)" = 1 ] || die "$(count_servers) servers after the restart, not 1"
check "kill -9: server $(server_pid) healthy, alert $(eml_ok | head -1) written"

say "watchdog: a test drop-in WatchdogSec=3s, then SIGSTOP the monitor"
ct install -d /etc/systemd/system/server-monitor.service.d
printf '[Service]\nWatchdogSec=3s\nRestartSec=1s\n' | ct tee /etc/systemd/system/server-monitor.service.d/zz-test-watchdog.conf >/dev/null
ct systemctl daemon-reload
ct systemctl restart server-monitor
m1=$(prop server-monitor MainPID)
s2=$(server_pid)
sleep 4  # longer than WatchdogSec: the pings work while the loop turns
is_active server-monitor && [ "$(prop server-monitor MainPID)" = "$m1" ] \
  || die "a running monitor was killed by a 3 s watchdog: pings missing"
ckill -STOP "$m1"
wait_until 40 "systemd killed the frozen monitor and started a new one" main_changed "$m1"
wait_until 30 "the unit active again" is_active server-monitor
wait_until 30 "the server healthy after the watchdog restart" healthy "$P"
wd_logged() { ct journalctl -u server-monitor --no-pager | grep -q 'Watchdog timeout'; }
wait_until 10 "'Watchdog timeout' in the journal" wd_logged
sleep 2
[ "$(count_servers)" = 1 ] || die "$(count_servers) servers after the watchdog restart, not 1: $(servers | tr '\n' ' ')"
pid_gone "$m1" || die "the frozen monitor $m1 is still there"
s3=$(server_pid)
check "watchdog fired (journal: Watchdog timeout); monitor $m1 -> $(prop server-monitor MainPID), server $s2 -> $s3, one server"
say "after the watchdog: /srv/app holds $(ct ls /srv/app | tr '\n' ' ')"
ct rm /etc/systemd/system/server-monitor.service.d/zz-test-watchdog.conf
ct systemctl daemon-reload

say "systemctl stop"
s4=$(server_pid)
cg=$(prop server-monitor ControlGroup)
start_ms=$(date +%s%3N)
ct systemctl stop server-monitor
stop_ms=$(( $(date +%s%3N) - start_ms ))
[ "$stop_ms" -le 4000 ] || die "systemctl stop took ${stop_ms} ms (STOP_TIMEOUT=2)"
[ "$(prop server-monitor ExecMainStatus)" = 0 ] || die "the monitor exited with status $(prop server-monitor ExecMainStatus), not 0"
[ "$(prop server-monitor Result)" = success ] || die "Result=$(prop server-monitor Result) after stop"
pid_gone "$s4" || die "server $s4 still runs after systemctl stop"
[ "$(count_servers)" = 0 ] || die "servers left after stop: $(servers | tr '\n' ' ')"
if ct test -e "/sys/fs/cgroup$cg/cgroup.procs" && [ -n "$(ct cat "/sys/fs/cgroup$cg/cgroup.procs")" ]; then
  die "processes left in $cg: $(ct cat "/sys/fs/cgroup$cg/cgroup.procs" | tr '\n' ' ')"
fi
unhealthy "$P" || die "the port still answers after stop"
check "stop: ${stop_ms} ms, exit status 0, no process of the unit left"

say "systemctl restart with KEEP_SERVER_ON_EXIT=true (drop-in KillMode=process, as the README says)"
echo KEEP_SERVER_ON_EXIT=true | ct tee -a /etc/server-monitor/server-monitor.env >/dev/null
printf '[Service]\n# KEEP_SERVER_ON_EXIT=true: systemd must not kill the server the monitor leaves.\nKillMode=process\n' \
  | ct tee /etc/systemd/system/server-monitor.service.d/keep-server.conf >/dev/null
ct systemctl daemon-reload
ct systemctl start server-monitor
s5=$(server_pid)
ct systemctl restart server-monitor
is_active server-monitor || die "not active after restart"
healthy "$P" || die "not healthy after restart"
[ "$(server_pid)" = "$s5" ] || die "restart with KEEP_SERVER_ON_EXIT: server $s5 replaced by $(server_pid), not adopted"
[ "$(count_servers)" = 1 ] || die "$(count_servers) servers after restart, not 1"
ct journalctl -u server-monitor --no-pager -n 50 | grep -qi adopt || say "note: no 'adopt' word in the journal (the JSON log has it)"
check "restart with KEEP_SERVER_ON_EXIT=true: server $s5 adopted, one server"
ct rm /etc/systemd/system/server-monitor.service.d/keep-server.conf
ct sed -i '/^KEEP_SERVER_ON_EXIT=/d' /etc/server-monitor/server-monitor.env
ct systemctl daemon-reload
ct systemctl restart server-monitor   # KillMode=mixed again: the kept server goes
wait_until 20 "healthy after going back to KillMode=mixed" healthy "$P"

say "two instances of the template unit"
declare -A IP
for name in a b; do
  IP[$name]=$(free_port)
  ct install -d -o app -g app -m 0750 "/srv/app-$name"
  tuning | ct tee "/etc/server-monitor/$name.env" >/dev/null
  ct chmod 0600 "/etc/server-monitor/$name.env"
  ct /mnt/deploy/scripts/install.sh --instance "$name" --user app --workdir "/srv/app-$name" \
    --command "/srv/app/demo-server --port ${IP[$name]} --log-dir logs" \
    --health-url "http://127.0.0.1:${IP[$name]}/health" --now >/dev/null
done
for name in a b; do
  is_active "server-monitor@$name" || die "server-monitor@$name not active"
  healthy "${IP[$name]}" || die "instance $name not healthy"
  ct test -s "/var/log/server-monitor-$name/server.pid" || die "no /var/log/server-monitor-$name/server.pid"
  ct test -d "/srv/app-$name/logs" || die "instance $name wrote no /srv/app-$name/logs"
  ct test -f "/etc/systemd/system/server-monitor@$name.service.d/app.conf" || die "no drop-in for instance $name"
done
[ "$(count_servers)" = 3 ] || die "$(count_servers) servers, not 3 (one per monitor)"
ct systemctl stop server-monitor@a
is_active server-monitor@b && healthy "${IP[b]}" || die "stopping instance a disturbed b"
unhealthy "${IP[a]}" || die "instance a's server still answers"
check "two template instances side by side, each its own LOG_DIR and drop-in; one stops alone"

say "an app as the README's: user chatbot, /srv/chatbot, a venv, its own logs/ (template instance chatbot)"
C=$(free_port)
ct useradd --system --user-group --home-dir /srv/chatbot --shell /usr/sbin/nologin chatbot
ct install -d -o chatbot -g chatbot -m 0750 /srv/chatbot
ct tee /srv/chatbot/app.py >/dev/null <<'PY'
# A tiny app in the manner of the chatbot server: logs/ in its own directory.
import http.server, json, logging, os, sys
os.makedirs("logs", exist_ok=True)
logging.basicConfig(filename="logs/app.log", level=logging.INFO)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"status": "healthy"}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        logging.info("GET %s", self.path)
    def log_message(self, *args):
        pass
logging.info("starting on %s", sys.argv[1])
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
PY
ct chown chatbot:chatbot /srv/chatbot/app.py
ct setpriv --reuid chatbot --regid chatbot --init-groups python3 -m venv /srv/chatbot/.venv
tuning | ct tee /etc/server-monitor/chatbot.env >/dev/null
ct chmod 0600 /etc/server-monitor/chatbot.env
ct /mnt/deploy/scripts/install.sh --instance chatbot --user chatbot --workdir /srv/chatbot \
  --command "/srv/chatbot/.venv/bin/python app.py $C" --health-url "http://127.0.0.1:$C/health" --now >/dev/null \
  || { ct journalctl -u server-monitor@chatbot --no-pager | tail -20
       ct tail -20 /var/log/server-monitor-chatbot/server_error.log || true
       die "enable --now server-monitor@chatbot failed"; }
is_active server-monitor@chatbot || die "server-monitor@chatbot not active"
healthy "$C" || die "the venv app is not healthy"
py=$(server_pid /var/log/server-monitor-chatbot)
[ "$(ct stat -c %U /proc/"$py")" = chatbot ] || die "the venv app does not run as chatbot"
wait_until 10 "the venv app wrote /srv/chatbot/logs/app.log" ct grep -q 'GET /health' /srv/chatbot/logs/app.log
[ "$(ct stat -c %U /srv/chatbot/logs/app.log)" = chatbot ] || die "logs/app.log not chatbot's"
if ct grep -qi 'read-only file system' /var/log/server-monitor-chatbot/server_error.log; then
  die "the venv app got 'Read-only file system'"
fi
# The main unit (user app) starting again leaves the instance's files alone.
ct systemctl restart server-monitor
[ "$(ct stat -c %U /var/log/server-monitor-chatbot/server_monitor.log)" = chatbot ] \
  || die "restarting server-monitor.service took the chatbot instance's log"
ct systemctl stop server-monitor@chatbot
pid_gone "$py" || die "the venv app still runs after stop"
check "a venv app of user chatbot runs and writes /srv/chatbot/logs/app.log under the hardened template unit"

say "systemd-analyze security server-monitor"
ct systemd-analyze security --no-pager server-monitor | sed 's/^/    /' || true
exposure=$(ct systemd-analyze security --no-pager server-monitor | sed -n 's/.*Overall exposure level for server-monitor.service: \([0-9.]*\) \(.*\)/\1 \2/p')
say "exposure: ${exposure:-unknown}"
ct systemctl stop server-monitor server-monitor@b
[ "$(count_servers)" = 0 ] || die "servers left: $(servers | tr '\n' ' ')"
stop_container
t_part1=$SECONDS

# === part 2: the Debian package, in a fresh boot ============================
boot_container "$root" "$art" "$work/container2.log"
say "fresh container for the package (pid 1 = $CT_PID1)"
# apt-get, as the README says, from the package's folder; nothing to download
# (no package lists in this root: it would fail if it needed the network).
apt_local() { ct bash -c 'cd /mnt/deploy && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./$1"' apt "$1"; }
if apt_local "$deb1" > "$work/apt.log" 2>&1; then
  if grep '^Get:' "$work/apt.log" | grep -qv ' /mnt/deploy/'; then cat "$work/apt.log"; die "apt-get downloaded something for a local .deb"; fi
  say "apt-get install ./$deb1: done, nothing downloaded"
else
  cat "$work/apt.log"
  die "apt-get install of the local .deb failed"
fi
[ "$(ct dpkg-query -W -f='${Status} ${Version}' server-monitor)" = "install ok installed $version" ] || die "package not installed"
ct id server-monitor >/dev/null || die "postinst created no server-monitor user"
[ "$(ct stat -c '%a %U' /etc/server-monitor/server-monitor.env)" = "600 server-monitor" ] \
  || die "env file: $(ct stat -c '%a %U' /etc/server-monitor/server-monitor.env), not 600 server-monitor"
ct dpkg-query -W -f='${Conffiles}' server-monitor | grep -q /etc/server-monitor/server-monitor.env || die "env file is no conffile"
[ "$(ct systemctl is-enabled server-monitor)" = disabled ] || die "the package enabled the service before it was configured"
[ "$(ct systemctl show -p FragmentPath --value server-monitor)" = /lib/systemd/system/server-monitor.service ] \
  || die "unit not at /lib/systemd/system: $(ct systemctl show -p FragmentPath --value server-monitor)"
check "installed: user, 0600 conffile, units known to systemd, not enabled"

Q=$(free_port)
ct install -m 0755 /mnt/deploy/demo-server /usr/local/bin/demo-server
{ tuning; echo "SERVER_COMMAND='/usr/local/bin/demo-server --port $Q --log-dir logs'"
  echo "SERVER_WORKDIR=/var/lib/server-monitor"; echo "HEALTH_URL=http://127.0.0.1:$Q/health"; } \
  | ct tee /etc/server-monitor/server-monitor.env >/dev/null
ct systemctl enable --now server-monitor
healthy "$Q" || die "packaged service: enable --now returned, server not healthy"
d1=$(server_pid); dm1=$(prop server-monitor MainPID)
check "configured and enabled: server $d1 healthy"

say "upgrade to $deb2 with the service running"
apt_local "$deb2" > "$work/apt.log" 2>&1 || { cat "$work/apt.log"; die "upgrade failed"; }
grep -q 'Configuration file' "$work/apt.log" && { cat "$work/apt.log"; die "the upgrade asked about the edited conffile"; }
[ "$(ct dpkg-query -W -f='${Version}' server-monitor)" = "$version+upgrade1" ] || die "not upgraded"
wait_until 20 "service active after the upgrade" is_active server-monitor
wait_until 20 "server healthy after the upgrade" healthy "$Q"
sleep 2
[ "$(count_servers)" = 1 ] || die "$(count_servers) servers after the upgrade, not 1"
d2=$(server_pid); dm2=$(prop server-monitor MainPID)
[ "$dm2" != "$dm1" ] || die "the monitor was not restarted on the new binary"
[ "$(prop server-monitor NRestarts)" = 0 ] || die "the monitor failed during the upgrade (NRestarts)"
starts=$(ct journalctl -u server-monitor --no-pager | grep -c 'Started server-monitor' || true)
check "upgrade: monitor $dm1 -> $dm2, server $d1 -> $d2 (restarted once), one server, ($starts unit starts in all)"
ct grep -q "Deploy Test" /etc/server-monitor/server-monitor.env || die "the upgrade replaced the edited env file"

say "apt-get remove, then purge"
ct apt-get remove -y -q server-monitor > "$work/apt.log" 2>&1 || { cat "$work/apt.log"; die "remove failed"; }
[ "$(ct systemctl is-active server-monitor)" != active ] || die "service still active after remove"
[ "$(count_servers)" = 0 ] || die "servers left after remove"
ct test -f /var/log/server-monitor/server_monitor.log || die "remove deleted the logs"
ct test -f /etc/server-monitor/server-monitor.env || die "remove deleted the conffile"
ct apt-get purge -y -q server-monitor > "$work/apt.log" 2>&1 || { cat "$work/apt.log"; die "purge failed"; }
for p in /var/log/server-monitor /var/lib/server-monitor /etc/server-monitor /usr/bin/server-monitor \
         /lib/systemd/system/server-monitor.service /etc/systemd/system/multi-user.target.wants/server-monitor.service; do
  if ct test -e "$p"; then die "$p left after purge"; fi
done
if ct id server-monitor >/dev/null 2>&1; then die "user server-monitor left after purge"; fi
check "remove kept logs and env file; purge removed them, the user and the enable link"
stop_container
t_part2=$SECONDS

say "PASS. time: build ${t_build}s, root $((t_root - t_build))s, install.sh part $((t_part1 - t_root))s, package part $((t_part2 - t_part1))s, total ${SECONDS}s"
say "exposure ${exposure:-unknown}; $deb1 $(wc -c < "$art/$deb1") bytes"
