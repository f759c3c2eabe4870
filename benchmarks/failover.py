"""Failover: what a `kill -9` of one of two workers costs the saga, against the same run with no kill.

    .venv/bin/python -m benchmarks.failover [--rate 100] [--seconds 60]

Needs the stack up and no other worker in the `shopflow` group. Two workers (the worker settings in the
environment, e.g. SHOPFLOW_STANDBY_REPLICAS or SHOPFLOW_WORKER_STATIC_MEMBERSHIP to compare; the saga's
default step timeouts); --rate one-line approved orders/s for --seconds with no kill (A), then again with
one worker SIGKILLed at the middle and restarted at once on its web port and data dir (B). From broker
timestamps: completions/s, the longest gap without one around the kill, p50/p99 placed -> terminal, TIMEOUT
cancellations, time until completions resume. Results go to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from itertools import pairwise

from confluent_kafka.admin import AdminClient
from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, wait_fixed

from benchmarks.progress import tqdm
from benchmarks.results import write_section
from shopflow.launch import AlreadyRunning, ShopflowProcess, worker_health
from shopflow.settings import get_settings
from shopflow.streams.client import SAGA_TOPICS, SagaClient, TopicReader
from shopflow.topologies.apply import apply_topics

TERMINAL = {"OrderConfirmed", "OrderCancelled"}
GROUP = "shopflow"
SLOW_MS = 1000  # an order slower than this is not served normally
settings = get_settings()
admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})


def now_ms() -> int:
    return int(time.time() * 1000)


def start_worker(port: int, gen: int) -> ShopflowProcess:
    """Started, not waited for (``wait_ready``). Logs at info: Faust's rebalance and recovery lines, with
    their times, are the failover's evidence; one log per worker and generation, fresh each run."""
    log = settings.log_dir / f"bench-failover-{port}-{gen}.log"
    log.unlink(missing_ok=True)
    proc = ShopflowProcess(f"worker :{port}", ["worker", "--web-port", str(port), "--loglevel", "info"], log,
                           health=worker_health(settings, port), timeout_s=180)
    try:
        proc.spawn()
    except AlreadyRunning:
        proc.close()
        raise RuntimeError(f"something already answers on :{port}; stop it first") from None
    return proc


def health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://{settings.host}:{port}/health/", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def group() -> tuple[str, int]:
    desc = admin.describe_consumer_groups([GROUP], request_timeout=5)[GROUP].result()
    return str(desc.state).rsplit(".", 1)[-1], len(desc.members)


def wait_ready(workers: dict[int, ShopflowProcess], timeout_s: float = 60) -> None:
    """Each worker ready (shopflow.launch: joined, tables restored; a LaunchError with its log's tail if it
    exits or is not within 180 s), and then the group settled: STABLE with our two members, nobody else's."""
    for proc in workers.values():
        proc.wait_ready()
    try:
        Retrying(stop=stop_after_delay(timeout_s), wait=wait_fixed(0.5),
                 retry=retry_if_result(lambda state: state != ("STABLE", 2)))(group)
    except RetryError:
        raise RuntimeError(f"group {GROUP} not STABLE with 2 members {timeout_s:.0f} s after both workers were "
                           f"ready (now {group()}); see .shopflow/logs/bench-failover-*.log") from None


class Monitor(threading.Thread):
    """Every change of the group's (state, members) and of each worker's /health/ answer, with its time."""

    def __init__(self, ports: list[int]):
        super().__init__(daemon=True)
        self.ports, self.stop = ports, threading.Event()
        self.events: list[tuple[int, str, str]] = []  # (ms, what, its new state)
        self.members: list[tuple[int, int]] = []  # (ms, members of the group)

    def foreign(self, start: int, end: int, kill: int | None) -> int:
        """The most members seen beyond ours (2, or 3 after a kill: the dead one until its session ends)."""
        return max([m - (3 if kill and t >= kill else 2) for t, m in self.members if start <= t <= end] + [0])

    def run(self) -> None:
        last: dict[str, str] = {}
        tick = 0
        while not self.stop.wait(0.5):
            try:
                state, members = group()
                seen: dict[str, str] = {"group": f"{state}/{members}"}
                self.members.append((now_ms(), members))
            except Exception as exc:  # noqa: BLE001 - a missed sample is not a failure
                seen = {"group": f"? {type(exc).__name__}"}
            tick += 1
            seen |= {f"health :{p}": str(health(p) or "down") for p in self.ports} if tick % 2 else {}
            for k, v in seen.items():
                if last.get(k) != v:
                    self.events.append((now_ms(), k, v))
                    last[k] = v


def run_phase(label: str, client: SagaClient, reader: TopicReader, run: str, skus: list[str],
              rate: float, seconds: float, kill=None) -> dict:
    total, interval = int(rate * seconds), 1.0 / rate
    placed, done, marks = {}, {}, {}

    def drain(timeout_s: float) -> None:
        for _, record, value, ts in reader.poll(timeout_s):
            oid = value.get("order_id", "")
            if oid.startswith(run) and record == "PlaceOrder":
                placed[oid] = ts
            elif oid.startswith(run) and record in TERMINAL and oid not in done:
                done[oid] = (ts, record, value.get("reason"))

    marks["start"], t0 = now_ms(), time.perf_counter()
    with tqdm(total=total, desc=f"{label}: placing at {rate:.0f}/s") as bar:
        for n in range(total):
            if n == total // 2:
                marks["mid"] = kill() if kill else now_ms()
            while (wait := t0 + n * interval - time.perf_counter()) > 0:
                drain(min(wait, 0.05))
            client.place(f"{run}-{n:06d}", [(skus[n % len(skus)], 1, 1999)], "tok_approve")
            bar.update(1)
            bar.set_postfix(terminal=len(done), refresh=False)
    client.flush(60)
    deadline = time.monotonic() + 150  # past the saga's 60 s reservation timeout and the failover grace
    with tqdm(total=total, initial=len(done), desc=f"{label}: to terminal") as bar:
        while (len(done) < total or len(placed) < total) and time.monotonic() < deadline:
            before = len(done)
            drain(0.2)
            bar.update(len(done) - before)
    return {"placed": placed, "done": done, **marks, "total": total}


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else (values or [float("nan")])[0]


def analyse(p: dict, rate: float, seconds: float) -> dict:
    placed, done, mid, start = p["placed"], p["done"], p["mid"], p["start"]
    lat = {o: done[o][0] - placed[o] for o in done if o in placed}
    times = sorted(ts for ts, _, _ in done.values())
    w0, w1 = mid - 5000, mid + min(30.0, seconds / 2) * 1000
    edges = [w0, *[t for t in times if w0 <= t <= w1], w1]
    gap_ms, gap_end = max((b - a, b) for a, b in pairwise(edges))
    # 1 s buckets from the kill (the middle) to the end of the placing: back when a bucket and the mean of
    # every bucket after it reach 80% of the offered rate (completions come in waves while a backlog drains)
    buckets = [sum(1 for t in times if mid + i * 1000 <= t < mid + (i + 1) * 1000) for i in range(int(seconds / 2))]
    slow = next((i for i, b in enumerate(buckets) if b < 0.8 * rate), None)
    back = 0 if slow is None else next((i for i in range(slow, len(buckets))
                                         if min(buckets[i], statistics.mean(buckets[i:])) >= 0.8 * rate), None)
    after = sorted((placed[o], lat[o]) for o in lat if placed[o] >= mid)
    late = [t for t, ms in after if ms > SLOW_MS]
    per_s = [sum(1 for t in times if start + i * 1000 <= t < start + (i + 1) * 1000)
             for i in range(min(int((max(times, default=start) - start) / 1000) + 1, int(seconds) + 30))]
    return {
        "placed": len(placed), "done": len(done), "lat": list(lat.values()), "per_s": per_s,
        "win_lat": [ms for o, ms in lat.items() if w0 <= placed[o] <= w1],
        "confirmed": sum(1 for _, r, _ in done.values() if r == "OrderConfirmed"),
        "timeouts": sum(1 for _, r, why in done.values() if r == "OrderCancelled" and why == "TIMEOUT"),
        "cancelled": sum(1 for _, r, _ in done.values() if r == "OrderCancelled"),
        "gap": gap_ms / 1000, "gap_end": (gap_end - mid) / 1000, "mid_s": (mid - start) / 1000,
        "first_after": (min(t + ms for t, ms in after) - mid) / 1000 if after else None,
        "back": back, "normal": (max(late) - mid) / 1000 if late else 0.0,
        "window": (w0 - mid) / 1000, "window_end": (w1 - mid) / 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    try:
        state = (admin.list_topics(timeout=5), group())[1]
    except Exception as exc:  # noqa: BLE001
        sys.exit(f"Kafka at {settings.bootstrap_servers} does not answer ({exc}); run `shopflow stack up`")
    if state[1]:
        sys.exit(f"group {GROUP} already has {state[1]} member(s) ({state[0]}): stop the other workers first")
    run = uuid.uuid4().hex[:6]
    skus = [f"{run}-FAIL-{i:02d}" for i in range(20)]
    try:
        apply_topics(admin)  # stock is seeded before any worker (which would apply the catalog) starts
        client = SagaClient(settings)
        for sku in skus:
            client.adjust_stock(sku, int(2 * args.rate * args.seconds / len(skus)) + 100)
        client.flush()
    except Exception as exc:  # noqa: BLE001
        sys.exit(f"cannot seed stock ({exc}); is the stack up? run `shopflow stack up`")

    # The workers run the saga's default step timeouts whatever this shell sets: shopflow.launch passes the
    # environment on, so the suite's short ones are taken out of it.
    for name in [k for k in os.environ if k.endswith(("_PAYMENT_TIMEOUT_S", "_RESERVATION_TIMEOUT_S"))]:
        del os.environ[name]
    ports = [settings.worker_port + 30 + i for i in range(2)]
    workers: dict[int, ShopflowProcess] = {}
    monitor = Monitor(ports)
    try:
        print(f"starting 2 workers on ports {ports} (logs: .shopflow/logs/bench-failover-*.log)")
        for port in ports:
            workers[port] = start_worker(port, 0)
        wait_ready(workers)
        monitor.start()
        reader = TopicReader(settings, client.codec, SAGA_TOPICS, from_end=True)
        a = run_phase("A baseline", client, reader, f"{run}-A", skus, args.rate, args.seconds)
        wait_ready(workers)
        victim = ports[0]

        def kill() -> int:
            at = now_ms()
            workers[victim].kill()  # SIGKILL, and waits for the process to be gone
            workers[victim].close()  # its log
            workers[victim] = start_worker(victim, 1)
            clock = f"{time.strftime('%T', time.localtime(at / 1000))}.{at % 1000:03d}"
            tqdm.write(f"kill -9 :{victim} at {clock}, restarted")
            return at

        b = run_phase("B kill -9", client, reader, f"{run}-B", skus, args.rate, args.seconds, kill)
        reader.close()
    finally:
        monitor.stop.set()
        for proc in workers.values():
            proc.close()  # SIGTERM, SIGKILL if still there after its timeout
        client.close()

    (settings.home / "bench-failover.json").write_text(json.dumps({"A": a, "B": b, "monitor": monitor.events}))
    foreign = [monitor.foreign(a["start"], b["start"], None), monitor.foreign(b["start"], now_ms(), b["mid"])]
    body = report(args.rate, args.seconds, a, b, monitor.events, foreign)
    knobs = [k for k, on in (("standby replicas", settings.standby_replicas),
                             ("static membership", settings.worker_static_membership)) if on]
    write_section("failover" + (f" ({', '.join(knobs)})" if knobs else ""), body)
    print(body)


def report(rate: float, seconds: float, a: dict, b: dict, events: list, foreign: list[int]) -> str:
    ra, rb = analyse(a, rate, seconds), analyse(b, rate, seconds)
    back = f"{rb['back']} s" if rb["back"] is not None else f"not within the {seconds / 2:.0f} s after the kill"
    first = "none" if rb["first_after"] is None else f"{rb['first_after']:.1f} s"
    def both(cell, target: str = "") -> list[str]:
        return [cell(ra), cell(rb), target]

    cells = {
        "orders placed / terminal": both(lambda r: f"{r['placed']:,} / {r['done']:,}"),
        "confirmed / cancelled / cancelled with reason TIMEOUT":
            both(lambda r: f"{r['confirmed']:,} / {r['cancelled']:,} / {r['timeouts']}", "0 TIMEOUT"),
        "p50 / p99 placed -> terminal, whole phase":
            both(lambda r: f"{pct(r['lat'], 50):,.0f} / {pct(r['lat'], 99):,.0f} ms"),
        "p99 placed -> terminal, orders placed in the window": both(lambda r: f"{pct(r['win_lat'], 99):,.0f} ms"),
        "longest gap with no completion in the window (its end, from the kill/middle)":
            both(lambda r: f"{r['gap']:.1f} s (at {r['gap_end']:+.1f} s)"),
        "kill -> first completion of an order placed after the kill": ["", first, "<= 10 s"],
        f"kill -> completions back to >= 80% of {rate:.0f}/s (and on average after)": ["", back, "<= 10 s"],
        f"kill -> every order placed from then on completes in <= {SLOW_MS} ms":
            ["", f"{rb['normal']:.1f} s" if rb["normal"] < seconds / 2 - 2 else "not before the end", ""],
    }
    table = f"| measure | A: no kill | B: kill -9 at t+{rb['mid_s']:.0f} s | target |\n| --- | ---: | ---: | ---: |\n"
    table += "".join(f"| {name} | {' | '.join(row)} |\n" for name, row in cells.items())
    if any(foreign):
        table += (f"\n**Not a clean run**: up to {foreign[0]} (A) / {foreign[1]} (B) worker(s) not started by this "
                  f"benchmark were in group `{GROUP}` (another worker on this broker); their joins and leaves are "
                  "rebalances too.\n")
    timeline = "\n".join(f"{(t - b['mid']) / 1000:+7.1f} s  {k:<13} {v}" for t, k, v in events if b["start"] <= t)
    return (
        f"2 workers, standby replicas 1, session timeout {settings.worker_session_timeout_s:g} s, heartbeat "
        f"{settings.worker_heartbeat_s:g} s, failover grace {settings.failover_grace_s:g} s, the saga's default step "
        f"timeouts; {rate:.0f} one-line approved orders/s over 20 skus for {seconds:.0f} s per phase. "
        f"In B one worker gets SIGKILL at the middle and is restarted at once on the same web port and data dir. "
        f"The window is [{rb['window']:+.0f} s, {rb['window_end']:+.0f} s] around the kill (around the middle in A); "
        f"times are broker timestamps.\n\n{table}\n"
        f"Completions per second from the first order (A, then B; the kill at t+{rb['mid_s']:.0f} s):\n\n"
        f"```\nA: {' '.join(map(str, ra['per_s']))}\nB: {' '.join(map(str, rb['per_s']))}\n```\n\n"
        f"Phase B, consumer group `{GROUP}` (state/members) and /health/ answers, seconds from the kill:\n\n"
        f"```\n{timeline}\n```\n\n"
        f"Command: `SHOPFLOW_STANDBY_REPLICAS={settings.standby_replicas} "
        f"SHOPFLOW_WORKER_STATIC_MEMBERSHIP={str(settings.worker_static_membership).lower()} "
        f".venv/bin/python -m benchmarks.failover --rate {rate:.0f} --seconds {seconds:.0f}`\n"
    )


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as exc:
        sys.exit(f"error: {exc}")
