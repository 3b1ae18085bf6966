#!/usr/bin/env bash
# tests/deploy/docker.sh: the Docker path of README.md "Under Docker", for real.
#
# Builds the shipped Dockerfile (FROM scratch, the static monitor only), then a
# test image that combines it with the static demo server the documented way
# (COPY --from), and checks with `docker run`: health answers; a crash inside
# is restarted; the monitor as pid 1 reaps orphans; logs land in the mounted
# volume with modes 0640/0750; `docker stop` ends everything within
# STOP_TIMEOUT with exit code 0, also with a server that ignores SIGTERM
# (tests/deploy/ignore-term.rs: STOP_TIMEOUT, then SIGKILL). Then the compose example
# (scripts/docker/docker-compose.yml, unchanged) with docker-compose: up -d,
# health answers, the monitor killed outright comes back through `restart:`
# with one server, down.
#
# Needs root. Installs Debian's docker.io and docker-compose when missing.
# Uses the dockerd that answers at DOCKER_HOST (or the default socket); when
# none answers it starts its own (private data root under target/, exec root
# and socket under /run, log in target/docker-test/dockerd.log) and stops it at
# the end. Everything it starts is removed, pass or fail. Ends with
# "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
TARGET=x86_64-unknown-linux-gnu
MONITOR_BIN=$ROOT/target/$TARGET/release/server-monitor
DEMO_BIN=$ROOT/target/$TARGET/release/demo-server
STATE=$ROOT/target/docker-test
EXEC_ROOT=/run/server-monitor-test-docker
STOP_TIMEOUT=2
TAG=server-monitor-test
RUN_NAME=$TAG-run-$$
STUBBORN_NAME=$TAG-stubborn-$$
PROJECT=smtest$$

START=$(date +%s.%N)
PASSED=0
FAILED=0
DOCKERD_PID=
WORK=
COMPOSE_DIR=

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { printf '[%6ss] %s\n' "$(since "$START")" "$*"; }
pass() { PASSED=$((PASSED + 1)); say "ok   $*"; }
fail() { FAILED=$((FAILED + 1)); say "FAIL $*" >&2; }
# A step without which nothing after it can run: fail loudly and stop.
fatal() {
    fail "$*"
    exit 1
}

# Debian's client (docker.io) when there; any docker CLI otherwise.
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=0 # the classic builder of docker.io; no buildx needed

docker_ok() { timeout 10 "$DOCKER" version >/dev/null 2>&1; }
d() { timeout 120 "$DOCKER" "$@"; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$COMPOSE_DIR" ] && [ -f "$COMPOSE_DIR/docker-compose.yml" ]; then
        (cd "$COMPOSE_DIR" && timeout 60 docker-compose -p "$PROJECT" down -t 10 >/dev/null 2>&1)
    fi
    if command -v "$DOCKER" >/dev/null && docker_ok; then
        timeout 30 "$DOCKER" rm -f "$RUN_NAME" "$STUBBORN_NAME" >/dev/null 2>&1
    fi
    if [ -n "$DOCKERD_PID" ]; then
        say "stopping the dockerd this test started (pid $DOCKERD_PID)"
        kill -TERM "$DOCKERD_PID" 2>/dev/null
        for _ in $(seq 100); do
            kill -0 "$DOCKERD_PID" 2>/dev/null || break
            sleep 0.2
        done
        # Its own process group (setsid): dockerd and its containerd.
        kill -KILL -- "-$DOCKERD_PID" 2>/dev/null
        # dockerd leaves its bind mount of the host's network namespace.
        mountpoint -q "$EXEC_ROOT/netns/default" 2>/dev/null && umount "$EXEC_ROOT/netns/default"
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    say "docker tests took $(since "$START") s"
    echo "$PASSED passed, $FAILED failed"
    if [ "$FAILED" -gt 0 ] || [ "$rc" -ne 0 ]; then
        exit 1
    fi
    exit 0
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---------------------------------------------------------------------------
# Tools

[ "$(id -u)" = 0 ] || fatal "needs root (dockerd, docker.io); run as root or with sudo"
mkdir -p "$ROOT/target"
# docker-compose (v1) brings python3, used for the HTTP checks; procps gives
# the ps that `docker top` runs.
if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null ||
    ! command -v python3 >/dev/null || ! command -v ps >/dev/null; then
    say "installing Debian's docker.io, docker-compose, python3 and procps (apt-get)"
    { DEBIAN_FRONTEND=noninteractive apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io docker-compose python3 procps; } \
        >"$ROOT/target/docker-apt.log" 2>&1 ||
        fatal "apt-get install docker.io docker-compose python3 procps failed (see target/docker-apt.log)"
fi

if docker_ok; then
    say "using the running dockerd (${DOCKER_HOST:-default socket})"
else
    mkdir -p "$STATE" "$EXEC_ROOT"
    export DOCKER_HOST=unix://$EXEC_ROOT/docker.sock
    # No default bridge and no iptables rules: the host's network and firewall
    # stay untouched (and another dockerd's docker0 is not shared); the
    # containers of `docker run` use the host network, compose its own bridge.
    setsid dockerd --data-root "$STATE/root" --exec-root "$EXEC_ROOT" \
        -H "$DOCKER_HOST" --pidfile "$EXEC_ROOT/dockerd.pid" \
        --bridge=none --iptables=false \
        </dev/null >"$STATE/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    for _ in $(seq 150); do
        docker_ok && break
        kill -0 "$DOCKERD_PID" 2>/dev/null || break
        sleep 0.2
    done
    docker_ok || fatal "dockerd did not answer within 30 s (see target/docker-test/dockerd.log)"
    say "started dockerd (pid $DOCKERD_PID, $DOCKER_HOST, log target/docker-test/dockerd.log)"
fi

# ---------------------------------------------------------------------------
# Helpers

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# `http_get URL`: prints "STATUS BODY" (or "000 error"), 2 s timeout.
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

# `wait_healthy URL SECS`: true once URL answers 200.
wait_healthy() {
    local deadline=$(($(date +%s) + $2))
    while [ "$(date +%s)" -le "$deadline" ]; do
        case $(http_get "$1") in 200*) return 0 ;; esac
        sleep 0.3
    done
    return 1
}

# `wait_down URL SECS`: true once URL stops answering 200.
wait_down() {
    local deadline=$(($(date +%s) + $2))
    while [ "$(date +%s)" -le "$deadline" ]; do
        case $(http_get "$1") in 200*) ;; *) return 0 ;; esac
        sleep 0.1
    done
    return 1
}

# The container's processes as "PID PPID STAT ARGS" lines (host pids).
container_ps() {
    d top "$1" -eo pid,ppid,stat,args 2>/dev/null | tail -n +2
}

# ---------------------------------------------------------------------------
# Binaries and images

t=$(now)
make -s release >/dev/null || fatal "make release failed"
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static -C link-arg=-Wl,--no-eh-frame-hdr" \
    cargo build -q --release --target "$TARGET" --bin demo-server ||
    fatal "the static demo-server build failed"
say "static binaries ready ($(since "$t") s)"

t=$(now)
d build -q -t "$TAG/monitor" "$ROOT" >/dev/null || fatal "docker build of the shipped Dockerfile failed"
pass "shipped Dockerfile builds ($(since "$t") s)"
size=$(d image inspect -f '{{.Size}}' "$TAG/monitor")
say "image $TAG/monitor: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f MiB", s / 1048576 }'))"
if out=$(d run --rm "$TAG/monitor" --version 2>&1); then
    pass "the image runs the monitor: $out"
else
    fail "docker run $TAG/monitor --version: $out"
fi

WORK=$(mktemp -d "$ROOT/target/docker-test.XXXXXX")
mkdir -p "$WORK/ctx"
cp "$DEMO_BIN" "$WORK/ctx/demo-server"
# The user's side, as README.md shows it: the server's image plus the monitor.
cat >"$WORK/ctx/Dockerfile" <<EOF
FROM scratch
COPY --from=$TAG/monitor /usr/local/bin/server-monitor /usr/local/bin/server-monitor
COPY demo-server /usr/local/bin/demo-server
ENTRYPOINT ["/usr/local/bin/server-monitor", "--"]
CMD ["/usr/local/bin/demo-server", "--host", "0.0.0.0", "--port", "8000"]
EOF
t=$(now)
d build -q -t "$TAG/app" "$WORK/ctx" >/dev/null || fatal "docker build of the test image (COPY --from) failed"
size=$(d image inspect -f '{{.Size}}' "$TAG/app")
pass "test image (monitor + demo server) builds ($(since "$t") s): $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f MiB", s / 1048576 }'))"

rustc --edition 2021 -O -C strip=symbols -C target-feature=+crt-static -C relocation-model=static \
    -o "$WORK/ctx/ignore-term" tests/deploy/ignore-term.rs || fatal "cannot build tests/deploy/ignore-term.rs"
printf 'FROM %s\nCOPY ignore-term /usr/local/bin/ignore-term\n' "$TAG/app" >"$WORK/ctx/Dockerfile.stubborn"
d build -q -t "$TAG/stubborn" -f "$WORK/ctx/Dockerfile.stubborn" "$WORK/ctx" >/dev/null ||
    fatal "docker build of the stubborn-server image failed"

# ---------------------------------------------------------------------------
# docker run

PORT=$(free_port)
URL=http://127.0.0.1:$PORT
mkdir -p "$WORK/vol"
t=$(now)
d run -d --name "$RUN_NAME" --network host -v "$WORK/vol:/data" \
    -e HEALTH_URL="$URL/health" -e CHECK_INTERVAL=1 -e HEALTH_TIMEOUT=1 \
    -e RESTART_COOLDOWN=1 -e STOP_TIMEOUT="$STOP_TIMEOUT" -e LOG_DIR=/data/logs \
    -e SERVICE_NAME=docker-test \
    "$TAG/app" /usr/local/bin/demo-server --host 127.0.0.1 --port "$PORT" \
    --fork-child /data/grandchild.pid >/dev/null || fatal "docker run failed"
if wait_healthy "$URL/health" 30; then
    pass "docker run: health answers on $URL ($(since "$t") s)"
else
    d logs "$RUN_NAME" 2>&1 | tail -20 >&2
    fatal "docker run: no healthy answer on $URL within 30 s"
fi

ps_before=$(container_ps "$RUN_NAME")
monitor_pid=$(d inspect -f '{{.State.Pid}}' "$RUN_NAME")
server_pid=$(awk -v m="$monitor_pid" '$2 == m && /demo-server/ { print $1 }' <<<"$ps_before" | head -1)
grandchild_pid=$(awk -v s="$server_pid" '$2 == s && /--grandchild/ { print $1 }' <<<"$ps_before" | head -1)
if [ -n "$server_pid" ] && [ -n "$grandchild_pid" ]; then
    pass "pid 1 is the monitor (host pid $monitor_pid), server $server_pid, its forked child $grandchild_pid"
else
    printf '%s\n' "$ps_before" >&2
    fail "expected the monitor, the server and the server's forked child in the container"
fi

# A crash inside: the server exits; its child is orphaned to pid 1. The
# restart can take milliseconds, so it is seen by the server's pid changing.
t=$(now)
http_get "$URL/crash" >/dev/null
new_server=
deadline=$(($(date +%s) + 30))
while [ "$(date +%s)" -le "$deadline" ]; do
    ps_after=$(container_ps "$RUN_NAME")
    new_server=$(awk -v m="$monitor_pid" '$2 == m && /demo-server/ && !/--grandchild/ { print $1 }' <<<"$ps_after" | head -1)
    [ -n "$new_server" ] && [ "$new_server" != "$server_pid" ] && break
    sleep 0.2
done
if [ -n "$new_server" ] && [ "$new_server" != "$server_pid" ] && wait_healthy "$URL/health" 30; then
    pass "crash inside the container: a new server (pid $new_server), healthy again ($(since "$t") s)"
else
    printf '%s\n' "$ps_after" >&2
    d logs "$RUN_NAME" 2>&1 | tail -20 >&2
    fail "crash inside the container: no new healthy server within 30 s"
fi
if grep -q '"message":"restarting the server"' "$WORK/vol/logs/server_monitor.log" &&
    ls "$WORK/vol/logs/alerts/"*restarted.eml >/dev/null 2>&1; then
    pass "the restart is logged and its alert written to alerts/"
else
    fail "no restart in the monitor's log or no alert in alerts/"
fi
out=$(d exec "$RUN_NAME" /usr/local/bin/server-monitor status 2>&1)
if grep -q '^monitor: *pid 1 (running)' <<<"$out" && grep -q '^state: *running' <<<"$out"; then
    pass "docker exec … server-monitor status: monitor pid 1 (running), state running"
else
    printf '%s\n' "$out" >&2
    fail "docker exec … server-monitor status failed"
fi
# If the orphan survived the crash (the old group was not killed), end it now
# from the host: either way an orphan of pid 1 dies inside the container.
if kill -0 "$grandchild_pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$grandchild_pid/status" 2>/dev/null; then
    say "the orphan $grandchild_pid outlived its parent; killing it (SIGKILL) to leave a zombie to reap"
    kill -KILL "$grandchild_pid"
fi
deadline=$(($(date +%s) + 10))
zombies=x
while [ "$(date +%s)" -le "$deadline" ]; do
    ps_now=$(container_ps "$RUN_NAME")
    zombies=$(awk '$3 ~ /Z/' <<<"$ps_now")
    [ -z "$zombies" ] && [ ! -e "/proc/$grandchild_pid/status" ] && break
    sleep 0.3
done
if [ -z "$zombies" ] && [ ! -e "/proc/$grandchild_pid/status" ]; then
    pass "pid 1 reaped the orphan $grandchild_pid; no zombie in the container"
else
    printf '%s\n' "$ps_now" >&2
    fail "zombie left in the container (orphan $grandchild_pid): $zombies"
fi

# docker stop: SIGTERM to pid 1, which stops the server and exits 0.
ps_last=$(container_ps "$RUN_NAME" | awk '{ print $1 }')
t=$(now)
d stop -t 10 "$RUN_NAME" >/dev/null || fail "docker stop failed"
took=$(since "$t")
code=$(d inspect -f '{{.State.ExitCode}}' "$RUN_NAME")
if [ "$code" = 0 ] && awk -v t="$took" -v s="$STOP_TIMEOUT" 'BEGIN { exit !(t <= s + 3) }'; then
    pass "docker stop: exit code 0 in $took s (STOP_TIMEOUT=$STOP_TIMEOUT)"
else
    d logs "$RUN_NAME" 2>&1 | tail -20 >&2
    fail "docker stop: exit code $code in $took s (want 0 within $STOP_TIMEOUT + 3 s)"
fi
left=
for pid in $ps_last; do
    [ -e "/proc/$pid" ] && left="$left $pid"
done
if [ -z "$left" ]; then
    pass "docker stop: no process of the container left"
else
    fail "docker stop: processes left:$left"
fi
if grep -q '"message":"server stopped"' "$WORK/vol/logs/server_monitor.log" 2>/dev/null &&
    grep -q '"message":"monitor stopped"' "$WORK/vol/logs/server_monitor.log"; then
    pass "the monitor logged \"server stopped\" and \"monitor stopped\""
else
    tail -5 "$WORK/vol/logs/server_monitor.log" >&2
    fail "no stop in the monitor's log"
fi

# The volume: the logs, with modes 0640 (files) and 0750 (directories).
logs=$WORK/vol/logs
missing=
for f in server_monitor.log server.log server_error.log server_monitor.state.json; do
    [ -f "$logs/$f" ] || missing="$missing $f"
done
[ -d "$logs/alerts" ] || missing="$missing alerts/"
if [ -z "$missing" ]; then
    pass "logs in the mounted volume: $(cd "$logs" && find . -mindepth 1 | sort | tr '\n' ' ')"
else
    fail "missing from the mounted volume:$missing"
fi
bad=$(find "$logs" \( -type f ! -perm 0640 \) -o \( -type d ! -perm 0750 \) -printf '%m %p\n')
if [ -z "$bad" ]; then
    pass "modes: files 0640, directories 0750 (LOG_DIR itself included)"
else
    fail "wrong modes in the volume: $bad"
fi
d rm -f "$RUN_NAME" >/dev/null 2>&1

# docker stop with a server that ignores SIGTERM: the monitor waits
# STOP_TIMEOUT, kills the group, and still exits 0 within docker's grace.
PORT2=$(free_port)
mkdir -p "$WORK/vol2"
d run -d --name "$STUBBORN_NAME" --network host -v "$WORK/vol2:/data" \
    -e HEALTH_URL="http://127.0.0.1:$PORT2/health" -e CHECK_INTERVAL=1 \
    -e STOP_TIMEOUT="$STOP_TIMEOUT" -e LOG_DIR=/data/logs \
    "$TAG/stubborn" /usr/local/bin/ignore-term /usr/local/bin/demo-server --host 127.0.0.1 --port "$PORT2" \
    >/dev/null || fatal "docker run of the stubborn server failed"
wait_healthy "http://127.0.0.1:$PORT2/health" 30 || fatal "the stubborn server did not answer within 30 s"
sleep 0.5 # past the monitor's verification
t=$(now)
d stop -t 10 "$STUBBORN_NAME" >/dev/null || fail "docker stop (stubborn server) failed"
took=$(since "$t")
code=$(d inspect -f '{{.State.ExitCode}}' "$STUBBORN_NAME")
if [ "$code" = 0 ] && awk -v t="$took" -v s="$STOP_TIMEOUT" 'BEGIN { exit !(t >= s - 0.5 && t <= s + 3) }' &&
    grep -q '"message":"server killed (SIGKILL) after STOP_TIMEOUT"' "$WORK/vol2/logs/server_monitor.log"; then
    pass "docker stop, server ignoring SIGTERM: SIGKILL after STOP_TIMEOUT, exit code 0 in $took s"
else
    tail -5 "$WORK/vol2/logs/server_monitor.log" >&2
    fail "docker stop, server ignoring SIGTERM: exit code $code in $took s (want 0, $STOP_TIMEOUT to $STOP_TIMEOUT + 3 s, a SIGKILL logged)"
fi
d rm -f "$STUBBORN_NAME" >/dev/null 2>&1

# ---------------------------------------------------------------------------
# The compose example, unchanged, in a project directory of its own

COMPOSE_DIR=$WORK/compose
mkdir -p "$COMPOSE_DIR"
cp scripts/docker/docker-compose.yml "$COMPOSE_DIR/docker-compose.yml"
CPORT=$(free_port)
cat >"$COMPOSE_DIR/.env" <<EOF
APP_IMAGE=$TAG/app
APP_PORT=$CPORT
SERVICE_NAME=compose-test
CHECK_INTERVAL=1
EOF
t=$(now)
if (cd "$COMPOSE_DIR" && timeout 120 docker-compose -p "$PROJECT" up -d --no-build) >"$WORK/compose-up.log" 2>&1; then
    pass "docker-compose up -d ($(since "$t") s)"
else
    cat "$WORK/compose-up.log" >&2
    fail "docker-compose up -d failed"
fi
if wait_healthy "http://127.0.0.1:$CPORT/health" 30; then
    pass "compose: health answers on 127.0.0.1:$CPORT ($(since "$t") s)"
else
    (cd "$COMPOSE_DIR" && timeout 30 docker-compose -p "$PROJECT" logs --tail 20) >&2
    fail "compose: no healthy answer on 127.0.0.1:$CPORT within 30 s"
fi
out=$(cd "$COMPOSE_DIR" && timeout 30 docker-compose -p "$PROJECT" exec -T app server-monitor status 2>&1)
if grep -q '^monitor: *pid 1 (running)' <<<"$out"; then
    pass "docker-compose exec app server-monitor status (the README's command)"
else
    printf '%s\n' "$out" >&2
    fail "docker-compose exec app server-monitor status failed"
fi
if [ -s "$COMPOSE_DIR/logs/server_monitor.log" ]; then
    pass "compose: the monitor's log is in ./logs"
else
    fail "compose: no ./logs/server_monitor.log"
fi
cid=$(cd "$COMPOSE_DIR" && timeout 30 docker-compose -p "$PROJECT" ps -q app)
# `restart: unless-stopped` covers the monitor: kill it (pid 1) outright; Docker
# starts the container again and the new monitor, finding the old one's
# server.pid and lock in the volume, starts one server and is healthy.
pid1=$(d inspect -f '{{.State.Pid}}' "$cid" 2>/dev/null)
if [ -n "$pid1" ] && [ "$pid1" != 0 ]; then
    t=$(now)
    kill -KILL "$pid1"
    restarted=
    for _ in $(seq 150); do
        count=$(d inspect -f '{{.RestartCount}} {{.State.Running}}' "$cid" 2>/dev/null)
        new_pid1=$(d inspect -f '{{.State.Pid}}' "$cid" 2>/dev/null)
        if [ "${count%% *}" -ge 1 ] 2>/dev/null && [ "${count#* }" = true ] &&
            [ "$new_pid1" != "$pid1" ] && [ "$new_pid1" != 0 ]; then
            restarted=yes
            break
        fi
        sleep 0.2
    done
    if [ -n "$restarted" ] && wait_healthy "http://127.0.0.1:$CPORT/health" 30; then
        sleep 2 # let a second server, if one were started, show up
        servers=$(container_ps "$cid" | awk '$4 ~ /demo-server$/ && !/--grandchild/' | wc -l)
        if [ "$servers" = 1 ]; then
            pass "compose: monitor killed (SIGKILL to pid 1): Docker restarted it, one server, healthy ($(since "$t") s)"
        else
            container_ps "$cid" >&2
            fail "compose: after the monitor's restart $servers servers run in the container"
        fi
    else
        (cd "$COMPOSE_DIR" && timeout 30 docker-compose -p "$PROJECT" logs --tail 20) >&2
        fail "compose: after SIGKILL to pid 1 the container was not restarted healthy within 30 s"
    fi
else
    fail "compose: cannot find the container's pid 1"
fi
t=$(now)
if (cd "$COMPOSE_DIR" && timeout 60 docker-compose -p "$PROJECT" down) >"$WORK/compose-down.log" 2>&1; then
    pass "docker-compose down ($(since "$t") s)"
else
    cat "$WORK/compose-down.log" >&2
    fail "docker-compose down failed"
fi
if grep -q '"message":"monitor stopped"' "$COMPOSE_DIR/logs/server_monitor.log" 2>/dev/null; then
    pass "compose: the monitor stopped cleanly on down"
else
    tail -5 "$COMPOSE_DIR/logs/server_monitor.log" >&2
    fail "compose: no stop in the monitor's log"
fi
if [ -n "$cid" ] && d inspect "$cid" >/dev/null 2>&1; then
    fail "compose: container $cid still exists after down"
fi
if wait_down "http://127.0.0.1:$CPORT/health" 5; then
    pass "compose: nothing answers on 127.0.0.1:$CPORT after down"
else
    fail "compose: 127.0.0.1:$CPORT still answers after down"
fi
COMPOSE_DIR=
