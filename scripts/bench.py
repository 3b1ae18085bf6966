#!/usr/bin/env python3
"""Measures server-monitor from the outside: reaction times, memory, CPU, size.

Run through scripts/bench.sh (which builds the static release binaries first).
Everything happens on 127.0.0.1 with the bundled demo server; every run stops
by itself and stops every process it started (by pid or process group only).

Figures, at CHECK_INTERVAL=1, HEALTH_TIMEOUT=1, FAILURE_THRESHOLD=3:
  crash -> healthy   kill -9 of the server until a new server answers healthy
  hang  -> healthy   GET /hang until a new server answers healthy
  idle RSS           VmRSS of the monitor after a minute of checks
  CPU per check      (utime + stime) over many checks at a short interval
  CPU between checks (utime + stime) while idle with a long interval
  heartbeat          CPU per check with HEARTBEAT_URL pinged every second
                     against without, and CPU per ping (a local sink)
  CPU per check with MEMORY_LIMIT set, on a server with 1 and with 20
                     processes in its group, against without (the same
                     measurement; the limit far above what they use)
  status listener    crash -> healthy and CPU per check with STATUS_LISTEN
                     on and /metrics scraped every second, against off;
                     RSS with it on
  size               of the static release binary
Times are medians (with min and max) of --runs runs (at least 5).

With --compare: the same demo server under server-monitor, monit and
supervisord + httpok, side by side (see scripts/compare.py).
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, timeout):
    """(status, body) of one GET, or None on any failure."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split()[1]), body
    except (OSError, ValueError, IndexError):
        return None


def healthy(port, timeout):
    r = get(port, "/health", timeout)
    return r is not None and r[0] == 200 and b'"healthy"' in r[1]


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.002)
    raise RuntimeError(f"timed out waiting for {what}")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def vm(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # kB
    return 0


class Run:
    """One monitor supervising one demo server, in a fresh directory."""

    def __init__(self, args, interval="1", extra_env=None, server_delay="0.06", server_args=()):
        self.dir = tempfile.mkdtemp(prefix="sm-bench-")
        self.port = free_port()
        self.logs = os.path.join(self.dir, "logs")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LOG_DIR": self.logs,
            "HEALTH_URL": f"http://127.0.0.1:{self.port}/health",
            "CHECK_INTERVAL": interval,
            "HEALTH_TIMEOUT": "1",
            "FAILURE_THRESHOLD": "3",
            "RESTART_COOLDOWN": "0",
            "MAX_RESTART_ATTEMPTS": "1000",
            "STOP_TIMEOUT": "1",
            "LOG_LEVEL": "info",
        }
        env.update(extra_env or {})
        cmd = [args.monitor, "--", args.demo, "--port", str(self.port),
               "--startup-delay", server_delay, *server_args]
        self.out = open(os.path.join(self.dir, "monitor.out"), "wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_for(lambda: healthy(self.port, 0.5), 15, "the first healthy answer")

    def server_pid(self):
        with open(os.path.join(self.logs, "server.pid")) as f:
            return int(f.readline())

    def stop(self, remove=True):
        server = None
        try:
            server = self.server_pid()
        except (OSError, ValueError):
            pass
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        if server:
            try:
                os.killpg(server, signal.SIGKILL)
            except OSError:
                pass
        self.out.close()
        if remove:
            subprocess.run(["rm", "-rf", self.dir], check=False)


def crash_to_healthy(args, extra_env=None, during=None):
    """`during(run)`: started once the monitor runs, stopped by the returned
    callable (the status figures' scraper)."""
    r = Run(args, extra_env=extra_env)
    stop_during = during(r) if during else (lambda: None)
    try:
        times = []
        for _ in range(args.runs):
            old = r.server_pid()
            time.sleep(0.3)
            t0 = time.perf_counter()
            os.kill(old, signal.SIGKILL)
            while True:
                if healthy(r.port, 0.2):
                    times.append(time.perf_counter() - t0)
                    break
                if time.perf_counter() - t0 > 15:
                    raise RuntimeError("no healthy server 15 s after kill -9")
                time.sleep(0.0005)
            wait_for(lambda: r.server_pid() != old, 5, "a new pid in server.pid")
        return times
    finally:
        stop_during()
        r.stop()


def hang_to_healthy(args):
    r = Run(args)
    try:
        times = []
        for _ in range(args.runs):
            old = r.server_pid()
            time.sleep(0.5 + 0.9 * len(times) / max(1, args.runs))  # vary the phase
            t0 = time.perf_counter()
            if get(r.port, "/hang", 1) is None:
                raise RuntimeError("GET /hang failed")
            while True:
                if healthy(r.port, 0.05):
                    times.append(time.perf_counter() - t0)
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("no healthy server 30 s after /hang")
                time.sleep(0.005)
            wait_for(lambda: r.server_pid() != old, 5, "a new pid in server.pid")
        return times
    finally:
        r.stop()


def idle_memory(args):
    r = Run(args)
    try:
        time.sleep(args.minute)
        return vm(r.proc.pid, "VmRSS"), vm(r.proc.pid, "VmHWM")
    finally:
        r.stop()


def cpu_per_check(args, extra_env=None, spawn=0, seconds=None, during=None):
    """CPU per check at a short interval (many checks, so that the 10 ms
    accounting tick is small beside the total), and while idle. `spawn`:
    idle children the server starts first (/spawn?n=N), in its group."""
    interval, seconds = 0.02, seconds or args.cpu_seconds
    r = Run(args, interval=str(interval), extra_env=extra_env)
    stop_during = during(r) if during else (lambda: None)
    try:
        if spawn:
            got = get(r.port, f"/spawn?n={spawn}", 5)
            if got is None or got[0] != 200:
                raise RuntimeError(f"GET /spawn?n={spawn} failed: {got}")
            time.sleep(0.5)
        # The demo server writes an access line per request: count those.
        log = os.path.join(r.logs, "server.log")
        def checks():
            with open(log) as f:
                return sum(line.startswith("GET /health 200") for line in f)
        c0, t0 = checks(), cpu_ticks(r.proc.pid)
        time.sleep(seconds)
        c1, t1 = checks(), cpu_ticks(r.proc.pid)
        per_check_ms = (t1 - t0) / TICK * 1000 / max(1, c1 - c0)
        return per_check_ms, c1 - c0
    finally:
        stop_during()
        r.stop()


class Sink:
    """A local HTTP sink on 127.0.0.1 for HEARTBEAT_URL: answers 200 and
    counts the pings; stopped by stop()."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.hits = 0
        self.done = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def url(self):
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/ping/bench"

    def serve(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            with c:
                c.settimeout(1)
                try:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = c.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                    self.hits += 1
                except OSError:
                    pass

    def stop(self):
        self.done = True
        self.thread.join(5)
        self.sock.close()


def heartbeat_cpu(args):
    """CPU per check (checks at 20 ms) without a heartbeat and with
    HEARTBEAT_INTERVAL=1, then CPU per ping (pings at 20 ms, checks hourly).
    Returns (without, with, per_ping_ms, pings)."""
    seconds = args.heartbeat_seconds
    without, _ = cpu_per_check(args, seconds=seconds)
    sink = Sink()
    try:
        env = {"HEARTBEAT_URL": sink.url(), "HEARTBEAT_INTERVAL": "1"}
        with_beat, _ = cpu_per_check(args, extra_env=env, seconds=seconds)
        r = Run(args, interval="3600", extra_env={**env, "HEARTBEAT_INTERVAL": "0.02"})
        try:
            wait_for(lambda: sink.hits > 0, 5, "the first heartbeat ping")
            h0, t0 = sink.hits, cpu_ticks(r.proc.pid)
            time.sleep(seconds)
            h1, t1 = sink.hits, cpu_ticks(r.proc.pid)
        finally:
            r.stop()
        per_ping = (t1 - t0) / TICK * 1000 / max(1, h1 - h0)
        return without, with_beat, per_ping, h1 - h0
    finally:
        sink.stop()


def print_heartbeat(figures):
    without, with_beat, per_ping, pings = figures
    print(f"CPU per check, no heartbeat: {without:.3f} ms (checks at 20 ms)")
    print(f"CPU per check, heartbeat 1s: {with_beat:.3f} ms (checks at 20 ms)")
    print(f"CPU per heartbeat ping:      {per_ping:.3f} ms ({pings} pings at 20 ms)")
def memory_cpu_per_check(args):
    """CPU per check without MEMORY_LIMIT, and with it on a server of 1 and
    of 20 processes: [(label, ms per check, checks)]."""
    limit = {"MEMORY_LIMIT": "8GiB"}
    out = []
    for label, env, spawn in (("without MEMORY_LIMIT", None, 0),
                              ("MEMORY_LIMIT, 1 process", limit, 0),
                              ("MEMORY_LIMIT, 20 processes", limit, 19)):
        ms, n = cpu_per_check(args, extra_env=env, spawn=spawn, seconds=args.memory_seconds)
        out.append((label, ms, n))
    return out


def scraper(port_holder):
    """A Prometheus-like client: GET /metrics once a second until stopped.
    Returns a function that starts it for a Run and returns its stop()."""
    def start(run):
        done = threading.Event()
        count = [0]

        def scrape():
            while not done.wait(1.0):
                if get(port_holder[0], "/metrics", 2) is not None:
                    count[0] += 1
        t = threading.Thread(target=scrape, daemon=True)
        t.start()

        def stop():
            done.set()
            t.join(5)
            if count[0] == 0:
                raise RuntimeError("the status listener answered no scrape")
        return stop
    return start


def status_figures(args):
    """Crash -> healthy and CPU per check with STATUS_LISTEN on and /metrics
    scraped every second, against off; RSS with it on after --status-seconds."""
    port = [free_port()]
    env = {"STATUS_LISTEN": f"127.0.0.1:{port[0]}"}
    on = scraper(port)
    crash_off = crash_to_healthy(args)
    crash_on = crash_to_healthy(args, extra_env=env, during=on)
    port[0] = free_port()
    env = {"STATUS_LISTEN": f"127.0.0.1:{port[0]}"}
    cpu_off, _ = cpu_per_check(args, seconds=args.status_seconds)
    cpu_on, n = cpu_per_check(args, extra_env=env, seconds=args.status_seconds, during=on)
    port[0] = free_port()
    env = {"STATUS_LISTEN": f"127.0.0.1:{port[0]}"}
    r = Run(args, extra_env=env)
    stop = on(r)
    try:
        time.sleep(args.status_seconds)
        rss = vm(r.proc.pid, "VmRSS")
    finally:
        stop()
        r.stop()
    return crash_off, crash_on, cpu_off, cpu_on, n, rss


def print_status(figures):
    crash_off, crash_on, cpu_off, cpu_on, n, rss = figures
    print(f"crash -> healthy, no listener:        {fmt(crash_off)}")
    print(f"crash -> healthy, listener + scrapes:  {fmt(crash_on)}")
    print(f"CPU per check, no listener:           {cpu_off:.3f} ms")
    print(f"CPU per check, listener + 1 scrape/s: {cpu_on:.3f} ms ({n} checks at 20 ms)")
    print(f"RSS with the listener, scraped:       {rss / 1024:.2f} MiB")


def print_memory(figures):
    for label, ms, n in figures:
        print(f"CPU per check, {label + ':':28s} {ms:.3f} ms ({n} checks at 20 ms)")


def cpu_idle(args):
    r = Run(args, interval="3600")
    try:
        time.sleep(1)
        t0 = cpu_ticks(r.proc.pid)
        time.sleep(args.idle_seconds)
        return (cpu_ticks(r.proc.pid) - t0) / TICK * 1000
    finally:
        r.stop()


def fmt(times):
    return (f"median {statistics.median(times):.3f} s "
            f"(min {min(times):.3f}, max {max(times):.3f}, n={len(times)})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--monitor", default=os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/server-monitor"))
    p.add_argument("--demo", default=os.path.join(ROOT, "target/x86_64-unknown-linux-gnu/release/demo-server"))
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--minute", type=float, default=60, help="seconds of checks before reading RSS")
    p.add_argument("--cpu-seconds", type=float, default=20)
    p.add_argument("--idle-seconds", type=float, default=10)
    p.add_argument("--heartbeat-seconds", type=float, default=10,
                   help="seconds of checks for each heartbeat figure")
    p.add_argument("--heartbeat-only", action="store_true",
                   help="only the heartbeat figures (CPU per check with and without, per ping)")
    p.add_argument("--memory-seconds", type=float, default=10,
                   help="seconds of checks for each MEMORY_LIMIT figure")
    p.add_argument("--status-seconds", type=float, default=10,
                   help="seconds of checks for each status-listener figure")
    p.add_argument("--status-only", action="store_true",
                   help="only the status listener figures (on and scraped against off)")
    p.add_argument("--memory-only", action="store_true",
                   help="only the CPU per check with and without MEMORY_LIMIT")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.add_argument("--compare", action="store_true",
                   help="side by side with monit and supervisord + httpok (scripts/compare.py)")
    p.add_argument("--install", action="store_true",
                   help="with --compare: install monit (apt-get) and supervisor + superlance (pip)")
    p.add_argument("--peers", default="ours,monit,supervisor",
                   help="with --compare: which to measure (ours, monit, supervisor)")
    p.add_argument("--window", type=float, default=180,
                   help="with --compare: seconds of checks for CPU and memory")
    args = p.parse_args()
    if args.runs < 5:
        p.error("--runs must be at least 5 (medians of at least 5 runs)")
    for b in (args.monitor, args.demo):
        if not os.access(b, os.X_OK):
            p.error(f"{b} is missing: run `make release` (or scripts/bench.sh) first")

    if args.compare:
        sys.dont_write_bytecode = True  # no __pycache__ in scripts/
        import compare  # scripts/compare.py, beside this file
        results = compare.run(args)
        if args.json:
            print(json.dumps(results))
        return

    print(f"server-monitor bench — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, {os.uname().release}")
    if args.heartbeat_only:
        beat = heartbeat_cpu(args)
        print_heartbeat(beat)
        if args.json:
            print(json.dumps({"heartbeat_cpu_per_check_ms": beat[:2], "cpu_per_ping_ms": beat[2]}))
        return
    print("settings: CHECK_INTERVAL=1 HEALTH_TIMEOUT=1 FAILURE_THRESHOLD=3; "
          "the demo server takes 0.06 s to start (--startup-delay 0.06)")
    if args.status_only:
        figures = status_figures(args)
        print_status(figures)
        if args.json:
            print(json.dumps({"status_listener": figures}))
        return
    if args.memory_only:
        figures = memory_cpu_per_check(args)
        print_memory(figures)
        if args.json:
            print(json.dumps({"memory_cpu_per_check_ms": {l: ms for l, ms, _ in figures}}))
        return
    crash = crash_to_healthy(args)
    print(f"crash (kill -9) -> healthy: {fmt(crash)}")
    hang = hang_to_healthy(args)
    print(f"hang -> healthy:            {fmt(hang)}")
    per_check, n = cpu_per_check(args)
    print(f"CPU per check:              {per_check:.3f} ms ({n} checks at 20 ms)")
    memory = memory_cpu_per_check(args)
    print_memory(memory)
    idle = cpu_idle(args)
    print(f"CPU between checks:         {idle:.1f} ms in {args.idle_seconds:.0f} s idle")
    beat = heartbeat_cpu(args)
    print_heartbeat(beat)
    listener = status_figures(args)
    print_status(listener)
    rss, hwm = idle_memory(args)
    print(f"RSS after {args.minute:.0f} s of checks:  {rss / 1024:.2f} MiB (peak {hwm / 1024:.2f} MiB)")
    size = os.path.getsize(args.monitor)
    print(f"static binary:              {size / 1048576:.2f} MiB ({size} bytes)")
    if args.json:
        print(json.dumps({
            "crash_to_healthy_s": crash, "hang_to_healthy_s": hang,
            "cpu_per_check_ms": per_check, "cpu_idle_ms": idle,
            "heartbeat_cpu_per_check_ms": beat[:2], "cpu_per_ping_ms": beat[2],
            "memory_cpu_per_check_ms": {l: ms for l, ms, _ in memory},
            "status_listener": listener,
            "rss_kib": rss, "hwm_kib": hwm, "binary_bytes": size,
        }))


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(f"bench: {e}")
