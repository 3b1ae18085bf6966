#!/usr/bin/env python3
"""Side by side: server-monitor, monit, and supervisord with superlance's
httpok, each supervising the same demo server (the release build of
demo-server, --startup-delay 0.06) on 127.0.0.1.

Run through `scripts/bench.sh --compare` (add `--install` to install monit
with apt-get and supervisor + superlance with pip into a venv under
~/.cache/server-monitor-bench). A peer that is not installed is skipped.

Each peer is set up as close as it allows to CHECK_INTERVAL=1 s, a 1 s
timeout and 3 failures in a row:
  server-monitor  CHECK_INTERVAL=1 HEALTH_TIMEOUT=1 FAILURE_THRESHOLD=3
                  RESTART_COOLDOWN=0 STOP_TIMEOUT=1
  monit           `set daemon 1` (its shortest cycle), a process check with a
                  pid file (it notices a death at its next cycle), and
                  `if failed port P protocol http request "/health" with
                  timeout 1 seconds for 3 cycles then restart`
  supervisord     autorestart=true, startsecs=0, stopwaitsecs=1; httpok -t 1
                  on TICK_5: every 5 s (the shortest tick supervisord has),
                  and it restarts on the first failure (it has no threshold)

Figures, per peer (times are medians with min and max of --runs runs):
  idle memory     VmRSS of the supervising process, and the PSS of all its
                  supervising processes (ours: the monitor and its two
                  log-writers; supervisord: supervisord and httpok)
  CPU per check   CPU time of those processes over --window seconds of
                  checking, divided by the health checks the server saw
                  (10 ms accounting ticks: read it with that resolution)
  crash -> healthy  kill -9 of the server until a new server answers healthy
  hang -> healthy   GET /hang until a new server answers healthy
Each fault comes after the peer has checked the new server at least once
(a steady state), at a phase spread over the peer's check period. The
script makes itself the reaper of orphans (as a prompt init would): monit's
daemon-style start leaves the server an orphan. Every file is in a
temporary directory; everything started is stopped at the end (by pid).
"""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
VENV = os.path.expanduser("~/.cache/server-monitor-bench/venv")


def install():
    """Installs monit (apt-get) and supervisor + superlance (pip, in a venv)."""
    if shutil.which("monit") is None:
        subprocess.run(["apt-get", "update", "-q"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "monit"], check=True)
    if not os.path.exists(os.path.join(VENV, "bin", "httpok")):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q",
                        "supervisor", "superlance"], check=True)


def find_tool(name):
    local = os.path.join(VENV, "bin", name)
    return local if os.access(local, os.X_OK) else shutil.which(name)


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(name))
    return out


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def access_lines(path):
    """The peer's health checks so far: the demo's access lines for /health
    (the script's own probes go to /elsewhere, so they do not count)."""
    try:
        with open(path, "rb") as f:
            return sum(line.startswith(b"GET /health ") for line in f)
    except OSError:
        return 0


def up(port, timeout):
    """Does the demo server answer? `/elsewhere` answers like a healthy
    /health from the same single-threaded server (so a hang hangs it too),
    without showing up as one of the peer's checks."""
    r = bench.get(port, "/elsewhere", timeout)
    return r is not None and r[0] == 200 and b'"healthy"' in r[1]


OWN = set()  # pids of our own subprocess.Popen children: never reaped here


def reap_orphans(*_):
    """SIGCHLD: reaps our zombie children that Popen does not own."""
    me = str(os.getpid())
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in OWN:
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] == "Z":
            try:
                os.waitpid(int(name), os.WNOHANG)
            except ChildProcessError:
                pass


def become_subreaper():
    """Makes this script the reaper of orphans, like a prompt init.

    NOTE: a daemon-style start (monit's) leaves the server an orphan; its
    death is a zombie until init reaps it. The init of this machine reaps
    late, and monit then sees "a zombie" for one more cycle. Reaping here
    at once is what systemd as init would do."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        print("compare: cannot become a child subreaper; orphans are reaped by init")
        return
    signal.signal(signal.SIGCHLD, reap_orphans)


class Peer:
    """One supervisor of one demo server in its own temporary directory."""

    name = "?"
    hang_period = 1.0  # how often the peer checks: spreads the runs' phases
    crash_period = 1.0

    def __init__(self, args):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix=f"sm-compare-{self.key}-")
        self.port = bench.free_port()
        self.url = f"http://127.0.0.1:{self.port}/health"
        self.demo_cmd = [args.demo, "--port", str(self.port), "--startup-delay", "0.06"]
        self.seen = set()  # every pid it started that we saw: stopped at the end
        self.proc = None

    def launch(self, cmd, env=None):
        self.out = open(os.path.join(self.dir, "supervisor.out"), "wb")
        self.proc = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        OWN.add(self.proc.pid)
        bench.wait_for(lambda: up(self.port, 0.5), 30,
                       f"{self.name}: the first healthy answer")

    def supervising(self):
        """The pids whose CPU and memory count as the peer's."""
        return [self.proc.pid]

    def server_pid(self):
        """The demo server's pid, found among the peer's descendants."""
        for pid in self.descendants():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[0] == self.args.demo.encode() and str(self.port).encode() in argv:
                return pid
        return None

    def descendants(self):
        out, todo = [], [self.proc.pid]
        while todo:
            kids = children(todo.pop())
            out += kids
            todo += kids
        self.seen.update(out)
        return out

    def server_log(self):
        return os.path.join(self.dir, "server.log")

    def cpu_ticks(self):
        return sum(bench.cpu_ticks(p) for p in self.supervising() if alive(p))

    def stop(self):
        self.descendants()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        time.sleep(0.3)
        left = [p for p in self.seen if alive(p)]
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        if left:
            # monit leaves its services running when it ends, by design.
            print(f"  ({self.name}: killed {len(left)} process(es) still running after it "
                  f"ended: {sorted(left)})")
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Ours(Peer):
    name, key = "server-monitor", "ours"

    def start(self):
        self.run = bench.Run(self.args)  # CHECK_INTERVAL=1 HEALTH_TIMEOUT=1 ...
        self.proc, self.port = self.run.proc, self.run.port
        OWN.add(self.proc.pid)

    def supervising(self):
        return [self.proc.pid] + [p for p in children(self.proc.pid) if p != self.server_pid()]

    def server_log(self):
        return os.path.join(self.run.logs, "server.log")

    def stop(self):
        self.descendants()
        self.run.stop()
        left = [p for p in self.seen if alive(p)]
        for p in left:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        if left:
            print(f"  ({self.name}: killed {len(left)} process(es) still running after it "
                  f"ended: {sorted(left)})")
        shutil.rmtree(self.dir, ignore_errors=True)


class Monit(Peer):
    name, key = "monit", "monit"

    def start(self):
        d = self.dir
        pidfile = os.path.join(d, "demo.pid")
        demo = " ".join(self.demo_cmd)
        # monit waits for a start program to end (up to its timeout): the
        # usual daemon-style start, which backgrounds the server and
        # writes its pid file.
        start = (f"/bin/sh -c '{demo} >> {d}/server.log 2>> {d}/server_error.log "
                 f"< /dev/null & echo $! > {pidfile}'")
        rc = os.path.join(d, "monitrc")
        with open(rc, "w") as f:
            f.write(f"""set daemon 1
set logfile {d}/monit.log
set pidfile {d}/monit.pid
set idfile {d}/monit.id
set statefile {d}/monit.state
check process demo with pidfile {pidfile}
  start program = "{start}" with timeout 3 seconds
  stop program = "/bin/sh -c 'kill $(cat {pidfile})'" with timeout 2 seconds
  if failed host 127.0.0.1 port {self.port} protocol http request "/health"
     with timeout 1 seconds for 3 cycles then restart
""")
        os.chmod(rc, 0o600)
        self.launch([find_tool("monit"), "-I", "-c", rc])

    def stop(self):
        self.server_pid()  # monit leaves it running: remembered, to be stopped
        super().stop()

    def server_pid(self):
        try:
            with open(os.path.join(self.dir, "demo.pid")) as f:
                pid = int(f.read())
        except (OSError, ValueError):
            return None
        self.seen.add(pid)
        return pid if alive(pid) else None


class Supervisor(Peer):
    name, key = "supervisord + httpok", "supervisor"
    hang_period = 5.0

    def start(self):
        d = self.dir
        conf = os.path.join(d, "supervisord.conf")
        with open(conf, "w") as f:
            f.write(f"""[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}

[unix_http_server]
file={d}/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{d}/supervisor.sock

[program:demo]
command={" ".join(self.demo_cmd)}
autorestart=true
startsecs=0
startretries=1000
stopwaitsecs=1
stopasgroup=true
killasgroup=true
stdout_logfile={d}/server.log
stderr_logfile={d}/server_error.log

[eventlistener:httpok]
command={find_tool("httpok")} -p demo -t 1 {self.url}
events=TICK_5
stderr_logfile={d}/httpok.log
""")
        self.launch([find_tool("supervisord"), "-c", conf])

    def supervising(self):
        pids = [self.proc.pid]
        server = self.server_pid()
        return pids + [p for p in children(self.proc.pid) if p != server]


PEERS = {"ours": Ours, "monit": Monit, "supervisor": Supervisor}


def installed(key):
    if key == "monit":
        return find_tool("monit") is not None
    if key == "supervisor":
        return find_tool("supervisord") is not None and find_tool("httpok") is not None
    return True


def settle(peer, pause):
    """Waits for the peer's next check of the (new) server, then `pause`:
    a fault comes in a steady state, not in the wake of the last restart
    (monit, for one, does not test during a start's timeout)."""
    log, deadline = peer.server_log(), time.monotonic() + 60
    n = access_lines(log)
    while access_lines(log) <= n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{peer.name}: no check of the server for 60 s")
        time.sleep(0.05)
    time.sleep(pause)


def crash_times(peer, runs):
    times = []
    for i in range(runs):
        # Spread the kills over the peer's cycle (monit looks once a second).
        settle(peer, 0.2 + peer.crash_period * i / runs)
        old = peer.server_pid()
        if old is None:
            raise RuntimeError(f"{peer.name}: no server to kill")
        t0 = time.perf_counter()
        os.kill(old, signal.SIGKILL)
        while not up(peer.port, 0.2):
            if time.perf_counter() - t0 > 30:
                raise RuntimeError(f"{peer.name}: no healthy server 30 s after kill -9")
            time.sleep(0.0005)
        times.append(time.perf_counter() - t0)
        bench.wait_for(lambda: peer.server_pid() not in (None, old), 5,
                       f"{peer.name}: the new server's pid")
    return times


def hang_times(peer, runs):
    times = []
    for i in range(runs):
        settle(peer, 0.2 + peer.hang_period * i / runs)
        old = peer.server_pid()
        t0 = time.perf_counter()
        if bench.get(peer.port, "/hang", 1) is None:
            raise RuntimeError(f"{peer.name}: GET /hang failed")
        while not up(peer.port, 0.05):
            if time.perf_counter() - t0 > 60:
                raise RuntimeError(f"{peer.name}: no healthy server 60 s after /hang")
            time.sleep(0.005)
        times.append(time.perf_counter() - t0)
        bench.wait_for(lambda: peer.server_pid() not in (None, old), 5,
                       f"{peer.name}: the new server's pid")
    return times


def measure(peer, args):
    peer.start()
    try:
        time.sleep(2)  # past start-up
        log = peer.server_log()
        c0, t0 = access_lines(log), peer.cpu_ticks()
        time.sleep(args.window)
        c1, t1 = access_lines(log), peer.cpu_ticks()
        rss = bench.vm(peer.supervising()[0], "VmRSS")
        pss = sum(pss_kib(p) for p in peer.supervising())
        n = c1 - c0
        result = {
            "rss_kib": rss, "pss_kib": pss, "processes": len(peer.supervising()),
            "checks": n, "cpu_ms": (t1 - t0) / TICK * 1000,
            "cpu_per_check_ms": (t1 - t0) / TICK * 1000 / max(1, n),
        }
        result["crash"] = crash_times(peer, args.runs)
        result["hang"] = hang_times(peer, args.runs)
        return result
    finally:
        peer.stop()


def span(times):
    return (f"{statistics.median(times):.2f} s ({min(times):.2f}–{max(times):.2f})")


def table(results, args):
    lines = [
        f"Measured {time.strftime('%Y-%m-%d', time.gmtime())} on {os.cpu_count()} cores "
        f"({cpu_model()}), Linux {os.uname().release}; `scripts/bench.sh --compare`, "
        f"{args.runs} runs each, CPU over {args.window:.0f} s of checks.",
        "",
        "| | idle RSS | PSS, all its processes | CPU per check | crash → healthy | hang → healthy |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, r in results.items():
        name = PEERS[key].name + (" " + r["version"] if r.get("version") else "")
        lines.append(
            f"| {name} | {r['rss_kib'] / 1024:.1f} MiB | {r['pss_kib'] / 1024:.1f} MiB "
            f"({r['processes']}) | {r['cpu_per_check_ms']:.2f} ms ({r['checks']} checks) "
            f"| {span(r['crash'])} | {span(r['hang'])} |")
    return "\n".join(lines)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def version(key):
    try:
        if key == "monit":
            out = subprocess.run([find_tool("monit"), "-V"], capture_output=True, text=True)
            return out.stdout.split()[4] if out.stdout else ""
        if key == "supervisor":
            out = subprocess.run([find_tool("supervisord"), "--version"],
                                 capture_output=True, text=True)
            return out.stdout.strip()
    except (OSError, IndexError):
        return ""
    return ""


def run(args):
    if args.install:
        install()
    become_subreaper()
    results = {}
    for key in args.peers.split(","):
        if not installed(key):
            print(f"{PEERS[key].name}: not installed, skipped (--install installs it)")
            continue
        print(f"{PEERS[key].name}: measuring ({args.window:.0f} s of checks, "
              f"{args.runs} crashes, {args.runs} hangs)")
        r = measure(PEERS[key](args), args)
        r["version"] = version(key)
        results[key] = r
        print(f"  RSS {r['rss_kib'] / 1024:.2f} MiB, PSS {r['pss_kib'] / 1024:.2f} MiB, "
              f"CPU {r['cpu_ms']:.0f} ms for {r['checks']} checks; "
              f"crash -> healthy {span(r['crash'])}; hang -> healthy {span(r['hang'])}")
    print()
    print(table(results, args))
    return results
