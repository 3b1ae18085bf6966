#!/usr/bin/env python3
"""Long runs of the real binary: does anything grow, leak or linger?

Run through scripts/soak.sh (which builds the static release binaries first).
Three phases, each with its own monitor and demo server on 127.0.0.1:

  checks    --checks health checks (default 100,000) at CHECK_INTERVAL=1ms
  restarts  --restarts kill -9 of the server (default 1,000), each followed
            by a restart that is verified healthy (RESTART_COOLDOWN=0)
  crashes   --crashes restarts of a server that exits at start-up (the
            demo's fault file says `crash`), then the file says `ok` again
            and the server must come back healthy

At the start and the end of each phase it prints the monitor's VmRSS (and
peak), threads, open file descriptors, CPU time, its children with their
state, zombies among them, and the server's log-writer (capture) processes.
At the end of each phase it stops the monitor and reports any process it
started that is still alive (then kills it, by pid). Every wait is bounded;
every phase stops by itself.
"""

import argparse
import json
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in scripts/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (same directory; shares Run, healthy, vm, ...)

TICK = os.sysconf("SC_CLK_TCK")


def processes():
    """pid -> (state, ppid, pgrp, start time, argv) of every process now."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue  # gone meanwhile
        fields = stat.rsplit(")", 1)[1].split()
        table[int(name)] = (fields[0], int(fields[1]), int(fields[2]), int(fields[19]), argv)
    return table


def snapshot(r):
    """What the monitor of run `r` holds now."""
    pid = r.proc.pid
    table = processes()
    try:
        server = r.server_pid()
    except (OSError, ValueError):
        server = None
    children = []
    for p, (state, ppid, _, start, argv) in sorted(table.items()):
        if ppid != pid:
            continue
        if len(argv) > 1 and argv[1] == "__capture":
            role = "capture " + os.path.basename(argv[2]) if len(argv) > 2 else "capture"
        elif p == server:
            role = "server"
        else:
            role = " ".join(argv)[:60] or "?"
        children.append({"pid": p, "state": state, "role": role, "start": start})
    # Log-writers for this run's LOG_DIR wherever they are (a leaked one
    # would have been handed to init).
    captures = [
        {"pid": p, "state": s, "ppid": pp, "file": os.path.basename(argv[2])}
        for p, (s, pp, _, _, argv) in sorted(table.items())
        if len(argv) > 2 and argv[1] == "__capture" and argv[2].startswith(r.logs + "/")
    ]
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    fds = sorted(os.listdir(f"/proc/{pid}/fd"), key=int)
    targets = []
    for fd in fds:
        try:
            targets.append(f"{fd}->{os.readlink(f'/proc/{pid}/fd/{fd}')}")
        except OSError:
            pass
    return {
        "rss_kib": bench.vm(pid, "VmRSS"),
        "hwm_kib": bench.vm(pid, "VmHWM"),
        "threads": threads,
        "fds": len(fds),
        "fd_targets": targets,
        "cpu_s": bench.cpu_ticks(pid) / TICK,
        "children": children,
        "zombies": [c for c in children if c["state"] == "Z"],
        "captures": captures,
        "server": server,
    }


def show(label, s):
    kids = ", ".join(f"{c['role']} {c['pid']} {c['state']}" for c in s["children"]) or "none"
    caps = ", ".join(f"{c['pid']} {c['state']} {c['file']} (ppid {c['ppid']})"
                     for c in s["captures"]) or "none"
    print(f"  {label}: VmRSS {s['rss_kib'] / 1024:.2f} MiB (peak {s['hwm_kib'] / 1024:.2f}), "
          f"threads {s['threads']}, fds {s['fds']}, CPU {s['cpu_s']:.2f} s")
    print(f"  {label}: children {len(s['children'])}: {kids}; zombies {len(s['zombies'])}")
    print(f"  {label}: capture processes {len(s['captures'])}: {caps}")


def finish(r, started_pids, result):
    """Stops the run; reports (and kills, by pid) what it started and is
    still alive. `started_pids` maps pid -> start time of every child seen."""
    r.stop(remove=False)
    time.sleep(0.5)  # log-writers end at their pipe's end of input
    table = processes()
    left = [p for p, start in started_pids.items()
            if p in table and table[p][3] == start and table[p][0] != "Z"]
    # Log-writers of this run's LOG_DIR that were never seen as children
    # (a crash loop can be quicker than the polling): reported, not killed.
    unseen = [p for p, (st, _, _, _, argv) in table.items()
              if p not in started_pids and st != "Z" and len(argv) > 2
              and argv[1] == "__capture" and argv[2].startswith(r.logs + "/")]
    if unseen:
        print(f"  after stop: log-writers of this LOG_DIR still alive, never seen: {unseen}")
    result["unseen_after_stop"] = unseen
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    result["left_after_stop"] = left
    print(f"  after stop: {len(left)} of the {len(started_pids)} processes it started "
          f"still alive{': ' + str(left) + ' (killed)' if left else ''}")
    levels, messages = {}, {}
    with open(os.path.join(r.logs, "server_monitor.log")) as f:
        for line in f:
            try:
                event = json.loads(line)
                level, message = event["level"], event["message"]
            except (ValueError, KeyError):
                level, message = "unparsable", line[:80]
            levels[level] = levels.get(level, 0) + 1
            if level in ("WARNING", "ERROR", "unparsable"):
                key = f"{level} {message}"
                messages[key] = messages.get(key, 0) + 1
    result["monitor_log_levels"] = levels
    print(f"  monitor log lines by level: {levels}")
    for key, n in sorted(messages.items(), key=lambda kv: -kv[1])[:6]:
        print(f"    {n} x {key[:120]}")
    os.system(f"rm -rf '{r.dir}'")


def remember(started_pids, s):
    for c in s["children"]:
        started_pids.setdefault(c["pid"], c["start"])


class AccessLines:
    """Counts `GET /health 200` lines in server.log as it grows."""

    def __init__(self, path):
        self.path, self.offset, self.count, self.partial = path, 0, 0, b""

    def update(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = self.partial + f.read()
        self.offset += len(data) - len(self.partial)
        lines = data.split(b"\n")
        self.partial = lines.pop()
        self.count += sum(line.startswith(b"GET /health 200") for line in lines)
        return self.count


def phase_checks(args):
    print(f"checks: {args.checks} health checks at CHECK_INTERVAL={args.interval}")
    r = bench.Run(args, interval=args.interval,
                  extra_env={"LOG_MAX_BYTES": str(1 << 30), "LOG_LEVEL": "info"})
    result, started = {}, {}
    try:
        counter = AccessLines(os.path.join(r.logs, "server.log"))
        base = counter.update()
        s0 = snapshot(r)
        remember(started, s0)
        show("start", s0)
        t0 = time.monotonic()
        deadline = t0 + args.checks_timeout
        next_report = t0 + 30
        while counter.update() - base < args.checks:
            now = time.monotonic()
            if now > deadline:
                print(f"  stopped at the {args.checks_timeout:.0f} s limit")
                break
            if now > next_report:
                print(f"  ... {counter.count - base} checks in {now - t0:.0f} s")
                next_report += 30
                remember(started, snapshot(r))
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        s1 = snapshot(r)
        remember(started, s1)
        n = counter.count - base
        show("end", s1)
        print(f"  {n} checks in {elapsed:.1f} s ({n / elapsed:.0f} a second, "
              f"{(s1['cpu_s'] - s0['cpu_s']) / max(1, n) * 1000:.3f} ms CPU each)")
        if s1["fds"] > s0["fds"]:
            print(f"  fds at start: {s0['fd_targets']}\n  fds at end:   {s1['fd_targets']}")
        result.update(checks=n, seconds=elapsed, start=s0, end=s1)
    finally:
        finish(r, started, result)
    return result


def verified(r, old):
    """Has the monitor verified a server other than `old`? (Its state file
    says `running` with the new pid.) Killing the new server before that
    would make the restart a failed verification, not a restart."""
    try:
        with open(os.path.join(r.logs, "server_monitor.state.json")) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return False  # not written yet
    return state.get("phase") == "running" and state.get("server_pid") not in (None, old)


def phase_restarts(args):
    print(f"restarts: {args.restarts} x kill -9 of the server, each restart verified healthy")
    r = bench.Run(args, interval="1", extra_env={"MAX_RESTART_ATTEMPTS": "1000000"})
    result, started = {}, {}
    try:
        bench.wait_for(lambda: verified(r, None), 15, "the first start's verification")
        s0 = snapshot(r)
        remember(started, s0)
        show("start", s0)
        t0, times = time.monotonic(), []
        for i in range(args.restarts):
            old = r.server_pid()
            k = time.monotonic()
            os.kill(old, signal.SIGKILL)
            bench.wait_for(lambda: bench.healthy(r.port, 0.5),
                           15, f"a healthy new server after kill -9 number {i + 1}")
            times.append(time.monotonic() - k)
            bench.wait_for(lambda: verified(r, old), 15,
                           f"the monitor's verification after kill -9 number {i + 1}")
            remember(started, snapshot(r))
            if (i + 1) % 100 == 0:
                print(f"  ... {i + 1} restarts in {time.monotonic() - t0:.0f} s")
        elapsed = time.monotonic() - t0
        time.sleep(0.5)  # let the last restart's alert and state settle
        s1 = snapshot(r)
        remember(started, s1)
        show("end", s1)
        state = json.load(open(os.path.join(r.logs, "server_monitor.state.json")))
        alerts = len(os.listdir(os.path.join(r.logs, "alerts")))
        outbox = os.path.join(r.logs, "outbox")
        queued = len(os.listdir(outbox)) if os.path.isdir(outbox) else 0
        times.sort()
        print(f"  {len(times)} restarts in {elapsed:.1f} s; kill -9 -> healthy median "
              f"{times[len(times) // 2]:.3f} s (min {times[0]:.3f}, max {times[-1]:.3f}); "
              f"state restarts_total {state.get('restarts_total')}; {alerts} alert files, "
              f"{queued} in the outbox")
        if s1["fds"] > s0["fds"]:
            print(f"  fds at start: {s0['fd_targets']}\n  fds at end:   {s1['fd_targets']}")
        result.update(restarts=len(times), seconds=elapsed, start=s0, end=s1,
                      restarts_total=state.get("restarts_total"), alert_files=alerts,
                      outbox=queued)
    finally:
        finish(r, started, result)
    return result


def phase_crashes(args):
    print(f"crashes: {args.crashes} restarts of a server that exits at start-up "
          "(fault file `crash`), then `ok`")
    fault = None
    r = None
    result, started = {}, {}
    try:
        import tempfile
        fault = tempfile.NamedTemporaryFile("w", prefix="sm-soak-fault-", delete=False)
        fault.write("ok\n")
        fault.close()
        r = bench.Run(args, interval="1", extra_env={"MAX_RESTART_ATTEMPTS": "1000000"},
                      server_args=("--fault-file", fault.name))
        state_path = os.path.join(r.logs, "server_monitor.state.json")

        def restarts():
            try:
                with open(state_path) as f:
                    return json.load(f).get("restarts_total", 0)
            except (OSError, ValueError):
                return None  # between the write and the rename

        bench.wait_for(lambda: verified(r, None), 15, "the first start's verification")
        s0 = snapshot(r)
        remember(started, s0)
        show("start", s0)
        base = restarts() or 0
        with open(fault.name, "w") as f:
            f.write("crash\n")
        t0 = time.monotonic()
        os.kill(r.server_pid(), signal.SIGKILL)
        deadline = t0 + args.crashes_timeout
        done = base
        while True:
            done = restarts() or done
            if done - base >= args.crashes or time.monotonic() > deadline:
                break
            remember(started, snapshot(r))
            time.sleep(0.05)
        with open(fault.name, "w") as f:
            f.write("ok\n")
        elapsed = time.monotonic() - t0
        bench.wait_for(lambda: bench.healthy(r.port, 0.5), 30, "a healthy server after `ok`")
        time.sleep(0.5)
        s1 = snapshot(r)
        remember(started, s1)
        show("end", s1)
        n = (restarts() or done) - base
        print(f"  {done - base} restarts of a crashing server in {elapsed:.1f} s, "
              f"{n} when it came back healthy")
        if s1["fds"] > s0["fds"]:
            print(f"  fds at start: {s0['fd_targets']}\n  fds at end:   {s1['fd_targets']}")
        result.update(restarts=n, seconds=elapsed, start=s0, end=s1)
    finally:
        if r is not None:
            finish(r, started, result)
        if fault is not None:
            os.unlink(fault.name)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--monitor", default=os.path.join(
        bench.ROOT, "target/x86_64-unknown-linux-gnu/release/server-monitor"))
    p.add_argument("--demo", default=os.path.join(
        bench.ROOT, "target/x86_64-unknown-linux-gnu/release/demo-server"))
    p.add_argument("--checks", type=int, default=100_000)
    p.add_argument("--interval", default="1ms", help="CHECK_INTERVAL of the checks phase")
    p.add_argument("--checks-timeout", type=float, default=1200)
    p.add_argument("--restarts", type=int, default=1000)
    p.add_argument("--crashes", type=int, default=1000)
    p.add_argument("--crashes-timeout", type=float, default=900)
    p.add_argument("--phases", default="checks,restarts,crashes")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = p.parse_args()
    for b in (args.monitor, args.demo):
        if not os.access(b, os.X_OK):
            p.error(f"{b} is missing: run `make release` (or scripts/soak.sh) first")
    print(f"server-monitor soak — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores, {os.uname().release}")
    results = {}
    for phase in args.phases.split(","):
        fn = {"checks": phase_checks, "restarts": phase_restarts,
              "crashes": phase_crashes}[phase]
        results[phase] = fn(args)
    if args.json:
        for res in results.values():
            for key in ("start", "end"):
                if key in res:
                    res[key].pop("fd_targets", None)
        print(json.dumps(results))


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        sys.exit(f"soak: {e}")
