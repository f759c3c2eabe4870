"""Table recovery: how fast a Faust worker restores a RocksDB table from its changelog, fresh and restarted.

    .venv/bin/python -m benchmarks.recovery [--keys 1000000] [--tail 10000] [--partitions 6]

Needs Kafka up (`shopflow stack up`). Leaves the saga's tables alone: a throwaway Faust app
(``bench-recovery-<id>``, its own consumer group and datadir under /tmp) declares one table as the
workers do (rocksdb store, ``key_type=bytes, value_type=bytes``, --partitions partitions) and an agent
on a dummy topic so the table is active. The benchmark creates the compacted changelog
``<app id>-stock-changelog``, fills it with --keys records (key ``sku-000001``..., a ~100-byte
StockState JSON value, murmur2-partitioned like Java and Faust producers) and then:
  1. fresh: starts the app's worker (``worker -l warn``) on an empty datadir; timed from the process
     start to the end of table recovery (the app's ``Recovery.completed`` event, which Faust sets just
     before logging "Worker ready"), with the phases in between;
  2. restart: stops it (SIGTERM), writes --tail more updates and starts it again on the same datadir,
     which reads only what follows the offsets persisted in RocksDB.
Each run checks that the table holds every key. Topics, group and datadir are deleted at the end.
Results go to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

MARK = "RECOVERY-DONE "
TABLE = "stock"


def worker_main(app_id: str, datadir: str, partitions: int, loglevel: str = "warn") -> None:
    """The throwaway app, run in the child process: one table, one agent, a report when recovery ends."""
    import faust

    from shopflow.settings import get_settings

    settings = get_settings()
    # Any: the report reads Faust internals (recovery, the store's partitions) its types do not declare.
    app: Any = faust.App(app_id, broker=f"kafka://{settings.bootstrap_servers}", store="rocksdb://", datadir=datadir,
                    web_enabled=False, topic_replication_factor=1, topic_partitions=partitions,
                    consumer_auto_offset_reset="earliest")
    table: Any = app.Table(TABLE, default=None, partitions=partitions, key_type=bytes, value_type=bytes)
    ticks = app.topic(f"{app_id}-ticks", key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw", partitions=partitions)
    assigned: list[float] = []

    @app.agent(ticks)
    async def tick(stream):
        async for key, value in stream.items():
            table[key] = value

    @app.on_partitions_assigned.connect
    async def on_assigned(sender, assigned_tps, **kwargs) -> None:
        assigned.append(time.time())

    @app.task
    async def report() -> None:
        recovery = app.tables.recovery
        await recovery.completed.wait()
        now, mono = time.time(), time.monotonic()
        wall = lambda m: None if m is None else now - (mono - m)  # noqa: E731
        store = table.data
        restored = sum(1 for p in range(partitions) for k in store._db_for_partition(p).keys()  # noqa: SIM118 - RocksDB's key iterator
                       if k != store.offset_key)
        print(MARK + json.dumps({"ready": now, "assigned": assigned[0] if assigned else None,
                                 "read_from": wall(recovery._recovery_started_at),
                                 "read_to": wall(recovery._recovery_ended_at), "restored": restored}), flush=True)

    sys.argv = [sys.argv[0], "worker", "-l", loglevel]
    app.main()


def fill(producer, topic: str, keys: range, width: int, version: int, label: str) -> float:
    """Produce one record per key; the mean value size in bytes."""
    from benchmarks.progress import tqdm
    from shopflow.tables.values import StockState, encode

    size = 0
    for i in tqdm(keys, desc=label, unit="rec", unit_scale=True, mininterval=0.5):
        sku = f"sku-{i:0{width}d}"
        value = encode(StockState(sku=sku, on_hand=1000 + i % 997, reserved=version, offset=i).to_dict())
        size += len(value)
        while True:
            try:
                producer.produce(topic, key=sku.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise SystemExit(f"records to {topic} still undelivered after 120 s: is Kafka up? (`shopflow stack status`)")
    return size / max(1, len(keys))


def run_worker(app_id: str, datadir: Path, partitions: int, label: str, timeout_s: float,
               loglevel: str) -> tuple[subprocess.Popen, dict]:
    log = datadir / f"worker-{label}.log"
    cmd = [sys.executable, "-m", "benchmarks.recovery", "--worker", app_id, str(datadir),
           "--partitions", str(partitions), "--loglevel", loglevel]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,  # noqa: SIM115 - the child's log
                            cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + timeout_s
    print(f"{label}: worker started (pid {proc.pid}), waiting for table recovery ...", flush=True)
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if MARK in line:  # the worker's stdout goes through its logging: "[date] [pid] [WARNING] MARK {...}"
                return proc, {**json.loads(line.split(MARK, 1)[1]), "start": t0}
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(proc)
    tail = "\n".join(log.read_text().splitlines()[-20:])
    raise SystemExit(f"{label}: the worker did not finish recovery in {timeout_s:.0f} s (exit {proc.returncode}); "
                     f"log {log}:\n{tail}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def row(name: str, records: int, r: dict, expect: int, headline: bool) -> str:
    total = r["ready"] - r["start"]
    read = (r["read_to"] or r["ready"]) - (r["read_from"] or r["ready"])
    phases = (f"{r['assigned'] - r['start']:.1f} / {(r['read_from'] or r['ready']) - r['assigned']:.1f} / "
              f"{read:.1f} / {r['ready'] - (r['read_to'] or r['ready']):.1f}") if r["assigned"] else "?"
    ok = "yes" if r["restored"] == expect else f"**no: {r['restored']:,} of {expect:,}**"
    rate = f"**{records / total:,.0f}**" if headline else f"{records / total:,.0f}"
    reading = f"{records / read:,.0f}" if read > 0 else "-"
    return f"| {name} | {records:,} | {total:.1f} s | {rate} | {reading} | {phases} | {ok} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--tail", type=int, default=None, help="updates written before the restart (default keys / 100)")
    ap.add_argument("--partitions", type=int, default=None, help="default: the saga tables' partitions")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for one recovery")
    ap.add_argument("--loglevel", default="warn", help="the worker's -l (at warn and above Faust keeps a spinner "
                    "and sets the root logger to DEBUG: every debug call builds a record)")
    ap.add_argument("--keep", action="store_true", help="keep topics and datadir (for a look afterwards)")
    ap.add_argument("--worker", nargs=2, metavar=("APP_ID", "DATADIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    from shopflow.tables import INVENTORY_TABLE

    partitions = args.partitions or INVENTORY_TABLE.partitions
    if args.worker:
        worker_main(args.worker[0], args.worker[1], partitions, args.loglevel)
        return

    from confluent_kafka import KafkaException, Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from benchmarks.results import write_section
    from shopflow.kafka import producer_config
    from shopflow.settings import get_settings

    settings = get_settings()
    tail = args.keys // 100 if args.tail is None else min(args.tail, args.keys)
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    try:
        admin.list_topics(timeout=5)
    except KafkaException as exc:
        raise SystemExit(f"Kafka is not reachable at {settings.bootstrap_servers} ({exc.args[0]}): "
                         "run `shopflow stack up`") from None

    app_id = f"bench-recovery-{uuid.uuid4().hex[:8]}"
    changelog = f"{app_id}-{TABLE}-changelog"
    datadir = Path(f"/tmp/{app_id}")
    datadir.mkdir(parents=True)
    proc = None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on a kill too
    try:
        for f in admin.create_topics([NewTopic(changelog, partitions, 1, config={"cleanup.policy": "compact"}),
                                      NewTopic(f"{app_id}-ticks", partitions, 1)]).values():
            f.result()
        producer = Producer(producer_config(settings.bootstrap_servers, "shopflow-recovery-benchmark", **{
            "linger.ms": 50, "batch.size": 1_000_000, "queue.buffering.max.messages": 500_000}))
        width = max(6, len(str(args.keys)))
        value_size = fill(producer, changelog, range(1, args.keys + 1), width, 0, f"filling {changelog}")

        proc, fresh = run_worker(app_id, datadir, partitions, "fresh", args.timeout, args.loglevel)
        stop(proc)
        fill(producer, changelog, range(1, tail + 1), width, 1, "writing the tail")
        proc, restart = run_worker(app_id, datadir, partitions, "restart", args.timeout, args.loglevel)
        stop(proc)
    finally:
        if proc is not None:
            stop(proc)
        if not args.keep:
            topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(app_id)]
            if topics:
                for f in admin.delete_topics(topics).values():
                    f.exception()
            admin.delete_consumer_groups([app_id])
            shutil.rmtree(datadir, ignore_errors=True)

    body = (
        f"A throwaway Faust app (faust-streaming, rocksdb store via rocksdict, `key_type=bytes, value_type=bytes`) "
        f"restoring one table of {partitions} partitions from its compacted changelog on the local broker; "
        f"{value_size:.0f}-byte StockState JSON values; one worker process (`worker -l {args.loglevel}`), the stack on "
        f"the same 2 cores. Time from the process start to Faust's `Recovery.completed` (set just before "
        f"\"Worker ready\"); phases: start -> partitions assigned (imports, connect, group join) / assigned -> "
        f"changelog reading starts (highwaters, offsets, seek) / reading / read -> ready (last flush).\n\n"
        f"| run | records read | process start -> ready | records/s, start -> ready | records/s, reading only "
        f"| phases, s | every key restored |\n| --- | ---: | ---: | ---: | ---: | --- | --- |\n"
        f"{row('fresh worker, empty datadir', args.keys, fresh, args.keys, True)}\n"
        f"{row('restart on its datadir (tail only)', tail, restart, args.keys, False)}\n\n"
        f"Target: a fresh worker restores >= 100,000 keys/s (start -> ready).\n\n"
        f"Command: `.venv/bin/python -m benchmarks.recovery --keys {args.keys} --tail {tail} --partitions {partitions}"
        f"{'' if args.loglevel == 'warn' else ' --loglevel ' + args.loglevel}`\n"
    )
    write_section("recovery", body)
    print(body)


if __name__ == "__main__":
    main()
