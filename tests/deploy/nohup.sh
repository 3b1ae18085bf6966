#!/usr/bin/env bash
# tests/deploy/nohup.sh: README.md "By hand, under nohup", the way the
# original design ran it, for real.
#
# An interactive bash on a pseudo-terminal of its own (a new session, python's
# pty.fork) starts, in the application's directory,
#   nohup server-monitor -- demo-server --port P > logs/monitor_console.log 2>&1 &
# and a control job without nohup (sleep); then the terminal "closes": the
# shell gets SIGHUP, passes it to its jobs and exits, and the kernel hangs up
# the session. Checks: the control job died (so SIGHUP really came), the
# monitor and the server survived and still restart a crash; then the stop the
# README gives, `kill $(head -1 logs/server_monitor.lock)`, ends the monitor
# and the server within STOP_TIMEOUT, and nothing of the app is left.
#
# Uses the static release binaries (builds them if needed). Every wait is
# bounded; every process started is stopped, pass or fail. Ends with
# "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
TARGET=x86_64-unknown-linux-gnu
MONITOR_BIN=$ROOT/target/$TARGET/release/server-monitor
DEMO_BIN=$ROOT/target/$TARGET/release/demo-server
STOP_TIMEOUT=2

START=$(date +%s.%N)
PASSED=0
FAILED=0
WORK=
SESSION_PID=
PIDS=() # "pid:start time" of every process this test may have to stop

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '[%6ss] %s\n' "$(since "$START")" "$*"; }
pass() { PASSED=$((PASSED + 1)); say "ok   $*"; }
fail() { FAILED=$((FAILED + 1)); say "FAIL $*" >&2; }
fatal() {
    fail "$*"
    exit 1
}
# The start time (clock ticks since boot) of a pid: a pid is stopped at the
# end only while it is still the process this test started, never a reuse.
start_time() { awk '{ sub(/^.*\) /, ""); print $20 }' "/proc/$1/stat" 2>/dev/null; }
track() {
    local pid
    for pid in "$@"; do
        [ -n "$pid" ] && PIDS+=("$pid:$(start_time "$pid")")
    done
}
alive() { [ -n "$1" ] && [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [ -n "$SESSION_PID" ] && kill -KILL "$SESSION_PID" 2>/dev/null
    for entry in "${PIDS[@]}"; do
        pid=${entry%%:*}
        if alive "$pid" && [ "$(start_time "$pid")" = "${entry#*:}" ]; then
            say "cleanup: stopping pid $pid ($(tr "\0" " " <"/proc/$pid/cmdline"; grep State "/proc/$pid/status"))"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    [ -n "$WORK" ] && rm -rf "$WORK"
    say "nohup tests took $(since "$START") s"
    echo "$PASSED passed, $FAILED failed"
    if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
        exit 1
    fi
    exit 0
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if ! command -v python3 >/dev/null || ! command -v ps >/dev/null; then
    # python3: the pseudo-terminal and the HTTP checks; procps: ps.
    [ "$(id -u)" = 0 ] || fatal "python3 and procps are needed; install them (apt-get install python3 procps) or run as root"
    say "installing Debian's python3 and procps (apt-get)"
    mkdir -p "$ROOT/target"
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 procps; } \
        >"$ROOT/target/nohup-apt.log" 2>&1 ||
        fatal "apt-get install python3 procps failed (see target/nohup-apt.log)"
fi
command -v nohup >/dev/null || fatal "nohup (coreutils) is missing"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
http_get() {
    python3 - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        print(r.status, r.read().decode(errors="replace").replace("\n", " "))
except urllib.error.HTTPError as e:
    print(e.code, "")
except Exception as e:
    print("000", type(e).__name__)
EOF
}
wait_healthy() {
    local deadline=$(($(date +%s) + $2))
    while [ "$(date +%s)" -le "$deadline" ]; do
        case $(http_get "$1") in 200*) return 0 ;; esac
        sleep 0.3
    done
    return 1
}
server_pid() { head -1 "$APP/logs/server.pid" 2>/dev/null; }

t=$(now)
make -s release >/dev/null || fatal "make release failed"
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static -C link-arg=-Wl,--no-eh-frame-hdr" \
    cargo build -q --release --target "$TARGET" --bin demo-server ||
    fatal "the static demo-server build failed"
say "release binaries ready ($(since "$t") s)"

WORK=$(mktemp -d "$ROOT/target/nohup-test.XXXXXX")
APP=$WORK/app
mkdir -p "$APP/logs" "$APP/bin"
cp "$MONITOR_BIN" "$APP/bin/server-monitor"
cp "$DEMO_BIN" "$APP/bin/demo-server"
PORT=$(free_port)
URL=http://127.0.0.1:$PORT
# The app's .env, which the monitor reads from its working directory.
cat >"$APP/.env" <<EOF
HEALTH_URL=$URL/health
CHECK_INTERVAL=1
HEALTH_TIMEOUT=1
RESTART_COOLDOWN=1
STOP_TIMEOUT=$STOP_TIMEOUT
SERVICE_NAME=nohup-test
EOF

# What the operator types at the terminal.
cat >"$WORK/session.sh" <<EOF
cd "$APP"
nohup bin/server-monitor -- bin/demo-server --port $PORT > logs/monitor_console.log 2>&1 &
echo \$! > "$WORK/monitor.pid"
sleep 600 &
echo \$! > "$WORK/control.pid"
EOF
# The terminal: an interactive bash, session leader on a new pseudo-terminal,
# reads the lines above as typed; once the file "hangup" exists the terminal
# closes (the master side), as a closed window or a dropped ssh does: the
# kernel sends SIGHUP to the shell, which passes it on to its jobs and exits.
cat >"$WORK/session_pty.py" <<'EOF'
import os, pty, select, sys, time
session, hangup = sys.argv[1], sys.argv[2]
pid, fd = pty.fork()
if pid == 0:
    os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
with open(session, "rb") as f:
    os.write(fd, f.read())
deadline = time.time() + 40
while not os.path.exists(hangup) and time.time() < deadline:
    if select.select([fd], [], [], 0.1)[0]:
        try:
            sys.stdout.buffer.write(os.read(fd, 4096))
        except OSError:
            break
os.close(fd)
for _ in range(100):
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        how = "signal %d" % os.WTERMSIG(status) if os.WIFSIGNALED(status) else "exit %d" % os.WEXITSTATUS(status)
        print("\nthe terminal closed; the shell ended:", how)
        break
    time.sleep(0.1)
else:
    print("\nthe shell did not end within 10 s of the hang-up")
EOF

t=$(now)
timeout 60 python3 "$WORK/session_pty.py" "$WORK/session.sh" "$WORK/hangup" >"$WORK/session.log" 2>&1 &
SESSION_PID=$!
for _ in $(seq 100); do
    [ -s "$WORK/monitor.pid" ] && [ -s "$WORK/control.pid" ] && break
    sleep 0.1
done
MONITOR=$(cat "$WORK/monitor.pid" 2>/dev/null)
CONTROL=$(cat "$WORK/control.pid" 2>/dev/null)
track "$MONITOR" "$CONTROL"
[ -n "$MONITOR" ] || { cat "$WORK/session.log" >&2; fatal "the shell session did not start the monitor"; }
if wait_healthy "$URL/health" 30; then
    pass "started under nohup from an interactive shell: health answers ($(since "$t") s)"
else
    cat "$APP/logs/monitor_console.log" >&2
    fatal "no healthy answer on $URL within 30 s"
fi
SERVER=$(server_pid)
track "$SERVER"
lock_pid=$(head -1 "$APP/logs/server_monitor.lock" 2>/dev/null)
if [ "$lock_pid" = "$MONITOR" ]; then
    pass "logs/server_monitor.lock holds the monitor's pid ($MONITOR)"
else
    fail "logs/server_monitor.lock holds '$lock_pid', the nohup job is $MONITOR"
fi

# The terminal closes.
t=$(now)
touch "$WORK/hangup"
wait "$SESSION_PID"
SESSION_PID=
say "$(tail -1 "$WORK/session.log" | tr -d '\r')"
for _ in $(seq 50); do
    alive "$CONTROL" || break
    sleep 0.1
done
if ! alive "$CONTROL"; then
    pass "the session hung up: its job without nohup died of SIGHUP ($(since "$t") s)"
else
    fail "the control job $CONTROL outlived the session: no SIGHUP came, the test proves nothing"
fi
sleep 1 # a SIGHUP the monitor did not survive would have ended it by now
if alive "$MONITOR" && alive "$SERVER" && wait_healthy "$URL/health" 5; then
    pass "the monitor ($MONITOR) and the server ($SERVER) survived the hang-up; health answers"
else
    cat "$APP/logs/monitor_console.log" >&2
    fatal "after the hang-up: monitor alive=$(alive "$MONITOR" && echo yes || echo no), server alive=$(alive "$SERVER" && echo yes || echo no)"
fi
sigign=$(awk '/^SigIgn:/ { print $2 }' "/proc/$MONITOR/status" 2>/dev/null)
if [ -n "$sigign" ] && (((0x$sigign & 1) == 1)); then
    pass "the monitor ignores SIGHUP (nohup's SIG_IGN kept)"
else
    fail "the monitor does not ignore SIGHUP (SigIgn: ${sigign:-unknown})"
fi
[ "$(ps -o tty= -p "$MONITOR" | tr -d ' ')" = "?" ] || say "note: the monitor still has a terminal: $(ps -o tty= -p "$MONITOR")"

# Still on duty: a crash is restarted.
t=$(now)
http_get "$URL/crash" >/dev/null
NEW=
for _ in $(seq 150); do
    NEW=$(server_pid)
    [ -n "$NEW" ] && [ "$NEW" != "$SERVER" ] && alive "$NEW" && break
    sleep 0.2
done
track "$NEW"
if [ -n "$NEW" ] && [ "$NEW" != "$SERVER" ] && wait_healthy "$URL/health" 30; then
    pass "after the hang-up a crash is still restarted: server $SERVER -> $NEW, healthy ($(since "$t") s)"
else
    tail -5 "$APP/logs/server_monitor.log" >&2
    fail "the crash was not restarted within 30 s"
fi

# The README's stop: SIGTERM to the pid in the lock file.
t=$(now)
kill -TERM "$(head -1 "$APP/logs/server_monitor.lock")"
for _ in $(seq $(((STOP_TIMEOUT + 5) * 10))); do
    alive "$MONITOR" || alive "$NEW" || break
    sleep 0.1
done
took=$(since "$t")
if ! alive "$MONITOR" && ! alive "$NEW" && ! alive "$SERVER"; then
    pass "kill \$(head -1 logs/server_monitor.lock): the monitor and the server ended in $took s (STOP_TIMEOUT=$STOP_TIMEOUT)"
else
    fail "after SIGTERM ($took s): monitor alive=$(alive "$MONITOR" && echo yes || echo no), server alive=$(alive "$NEW" && echo yes || echo no)"
fi
if grep -q '"message":"monitor stopped"' "$APP/logs/server_monitor.log"; then
    pass "the monitor logged \"monitor stopped\""
else
    fail "no \"monitor stopped\" in logs/server_monitor.log"
fi
left=
for p in /proc/[0-9]*; do
    [ "$(readlink "$p/cwd" 2>/dev/null)" = "$APP" ] && alive "${p#/proc/}" && left="$left ${p#/proc/}"
done
case $(http_get "$URL/health") in 200*) left="$left (something answers on $URL)" ;; esac
if [ -z "$left" ]; then
    pass "nothing is left: no process in the app's directory, nothing on port $PORT"
else
    fail "left running:$left"
fi
