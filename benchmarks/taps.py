"""Taps throughput: `shopflow tap` decoding a topic to JSONL, against kcat reading it raw and the codec alone.

    .venv/bin/python -m benchmarks.taps [--records 1000000] [--partitions 3] [--decode-sample 200000] [--drop]

Needs the stack up (`shopflow stack up`) and kcat for the raw baseline (Debian's: `apt-get install -y
kcat`; without it that row says so). The topic ``bench-taps-<records>`` holds OrderPlaced records (1-3
lines, a masked payment token) framed by the codec; it is produced once and reused by later runs
(``--drop`` deletes it at the end). Then, in the same run, each reading the whole topic:
  1. the tap in-process: ``Tap`` (decode, mask) + ``JsonLinesWriter`` to /dev/null;
  2. the CLI as a subprocess: ``shopflow tap TOPIC --from-beginning --format jsonl --output /dev/null``
     (process start included);
  3. kcat: ``kcat -C -b ... -t TOPIC -e -o beginning -f '%s\\n'`` to /dev/null (raw bytes, no decoding);
  4. the codec alone: ``AvroCodec.decode`` over ``--decode-sample`` of the topic's values in memory;
plus the cost per record of masking and of the JSON line over the decoded sample. Records/s and the ratios go
to benchmarks/results.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from benchmarks.codec import typical_order
from benchmarks.progress import tqdm
from benchmarks.results import write_section
from shopflow.schemas import load_schema
from shopflow.schemas.codec import AvroCodec
from shopflow.schemas.orders import OrderPlaced
from shopflow.schemas.registry import SchemaRegistry
from shopflow.settings import Settings, get_settings
from shopflow.streams.client import producer_config
from shopflow.taps.export import JsonLinesWriter
from shopflow.taps.masking import Masker
from shopflow.taps.reader import Tap, TapRequest
from shopflow.taps.records import TapRecord

SHOPFLOW = Path(sys.executable).with_name("shopflow")


@dataclass(frozen=True)
class Rate:
    """Records per second of wall clock, and per CPU-second the path used (steadier on shared cores)."""

    wall: float
    cpu: float
TOKENS = ("tok_approve", "tok_visa_4242", "tok_mc_5454", "tok_amex_3782")


def order(n: int) -> dict:
    """A typical OrderPlaced, varied: 1-3 lines, one of a few card tokens, its own ids."""
    value = typical_order()
    value.update(order_id=f"o-{n}", user_id=f"u-{n % 5000}", payment_token=TOKENS[n % len(TOKENS)],
                 lines=value["lines"][: n % 3 + 1])
    return value


def records_in(admin: AdminClient, settings: Settings, topic: str) -> int | None:
    """Records on ``topic`` (high minus low watermark, summed), or None when it does not exist."""
    meta = admin.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return None
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "bench-taps-watermarks"})
    try:
        return sum(hi - lo for lo, hi in (consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                                          for p in meta.partitions))
    finally:
        consumer.close()


def ensure_topic(settings: Settings, codec: AvroCodec, topic: str, records: int, partitions: int) -> str:
    """The topic with exactly ``records`` OrderPlaced records: reused when it has them, else made anew."""
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    found = records_in(admin, settings, topic)
    if found == records:
        return f"reused {topic} ({records:,} records)"
    if found is not None:
        admin.delete_topics([topic])[topic].result(timeout=60)
        wait_until_gone(admin, topic)
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=60)
    subject, schema = f"{topic}-{OrderPlaced.AVRO_NAME}", load_schema(OrderPlaced.AVRO_NAME)
    producer = Producer(producer_config(settings, **{"linger.ms": 50, "batch.size": 1_000_000}))
    t0 = time.perf_counter()
    for n in tqdm(range(records), desc=f"producing {topic}", unit="rec", mininterval=1):
        value = codec.encode_value(subject, schema, order(n))
        while True:
            try:
                producer.produce(topic, value=value, key=f"o-{n}")
                break
            except BufferError:  # the local queue is full: let it drain
                producer.poll(0.1)
        if n % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise SystemExit(f"{left} records were not acknowledged within 120 s; check `shopflow stack status`")
    return f"produced {topic} ({records:,} records in {time.perf_counter() - t0:.0f} s)"


def wait_until_gone(admin: AdminClient, topic: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while topic in admin.list_topics(timeout=10).topics:
        if time.monotonic() > deadline:
            raise SystemExit(f"{topic} was not deleted within {timeout_s:.0f} s; delete it and run again")
        time.sleep(0.5)


def tap_in_process(settings: Settings, codec: AvroCodec, topic: str, records: int) -> tuple[Rate, int]:
    """Records/s of Tap + JsonLinesWriter to /dev/null over the whole topic, masked as the CLI does."""
    request = TapRequest(topic, max_scanned=None)
    with open(os.devnull, "wb") as devnull, Tap(settings, request, codec=codec) as tap:
        writer = JsonLinesWriter(stream=devnull)
        bar = tqdm(total=records, desc="tap in-process", unit="rec", mininterval=1)
        t0, cpu0 = time.perf_counter(), time.process_time()
        for n, record in enumerate(tap.records(), 1):
            writer.write(record)
            if n % 10_000 == 0:
                bar.update(10_000)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        writer.close(tap.summary)
        bar.update(tap.summary.returned % 10_000)
        bar.close()
    return Rate(tap.summary.returned / elapsed, tap.summary.returned / cpu), tap.summary.returned


def timed(cmd: list[str], label: str, records: int) -> Rate:
    """Records/s of ``cmd`` (wall clock, and per CPU-second it used) with its output to /dev/null; a failure
    stops the benchmark with its stderr."""
    print(f"{label}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0, cpu0 = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"{label} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return Rate(records / elapsed, records / cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sample_values(settings: Settings, topic: str, n: int) -> list[bytes]:
    """The first ``n`` values of ``topic`` (all partitions), raw."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"bench-taps-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        idle_since = time.monotonic()
        while len(values) < n and time.monotonic() - idle_since < 10:
            batch = consumer.consume(min(10_000, n - len(values)), 1.0)
            good = [bytes(v) for m in batch if m.error() is None and (v := m.value()) is not None]
            if good:
                idle_since = time.monotonic()
            values += good
    finally:
        consumer.close()
    return values


def codec_rate(codec: AvroCodec, values: list[bytes]) -> Rate:
    t0, cpu0 = time.perf_counter(), time.process_time()
    for value in tqdm(values, desc="codec decode", unit="rec", mininterval=1):
        codec.decode(value)
    return Rate(len(values) / (time.perf_counter() - t0), len(values) / (time.process_time() - cpu0))


def stage_costs_us(settings: Settings, codec: AvroCodec, values: list[bytes]) -> tuple[float, float]:
    """CPU microseconds per record of the two steps a tap adds to the codec's decode, on up to 100,000 decoded
    OrderPlaced records in memory: masking (``Masker.mask_value``, a payment token each) and the JSON line
    (``TapRecord.json_line``)."""
    masker = Masker.from_settings(settings, codec)
    name = OrderPlaced.AVRO_NAME
    decoded = [(codec.decode(v), codec.schema_id(v)) for v in values[:100_000]]
    n = max(len(decoded), 1)
    t0 = time.process_time()
    masked = [masker.mask_value(name, schema_id, value) for value, schema_id in decoded]
    mask_us = (time.process_time() - t0) / n * 1e6
    records = [TapRecord(topic="t", partition=0, offset=i, timestamp_ms=0, key=f"o-{i}", headers=[], value=value,
                         value_format="avro", schema=name, schema_id=schema_id)
               for i, (value, (_, schema_id)) in enumerate(zip(masked, decoded, strict=True))]
    t0 = time.process_time()
    for record in records:
        record.json_line()
    return mask_us, (time.process_time() - t0) / n * 1e6


def codec_rate_of(rates: dict[str, Rate | None]) -> float:
    """The codec's own rate per CPU-second (its cost per record, free of the other engineers' load)."""
    return next(v.cpu for k, v in rates.items() if k.startswith("AvroCodec.decode") and v is not None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=3)
    ap.add_argument("--decode-sample", type=int, default=200_000,
                    help="values held in memory for the codec's own rate (not the whole topic: memory)")
    ap.add_argument("--drop", action="store_true", help="delete the topic at the end (else later runs reuse it)")
    args = ap.parse_args()

    settings = get_settings()
    registry = SchemaRegistry(settings.registry_url)
    codec = AvroCodec(registry)
    topic = f"bench-taps-{args.records}"
    began, load = time.perf_counter(), os.getloadavg()[0]  # the cores are shared: say how busy they were
    made = ensure_topic(settings, codec, topic, args.records, args.partitions)
    print(made, file=sys.stderr)

    rates: dict[str, Rate | None] = {}
    rates["shopflow tap, in-process (Tap + JsonLinesWriter)"], returned = tap_in_process(settings, codec, topic,
                                                                                          args.records)
    if returned != args.records:
        raise SystemExit(f"the tap returned {returned:,} of {args.records:,} records; see its summary above")
    cli = [str(SHOPFLOW), "tap", topic, "--from-beginning", "--format", "jsonl", "--output", os.devnull,
           "--max-scanned", str(args.records)]
    rates["shopflow tap CLI (subprocess, start-up included)"] = timed(cli, "CLI", args.records)
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    kcat_cmd = [kcat or "kcat", "-C", "-b", settings.bootstrap_servers, "-t", topic, "-e", "-q", "-o", "beginning",
                "-f", "%s\\n"]
    if kcat is None:
        print("kcat not found: install Debian's with `apt-get install -y kcat` for the raw baseline", file=sys.stderr)
        rates["kcat raw (-f '%s\\n')"] = None
    else:
        rates["kcat raw (-f '%s\\n')"] = timed(kcat_cmd, "kcat", args.records)
    values = sample_values(settings, topic, min(args.decode_sample, args.records))
    rates[f"AvroCodec.decode in memory ({len(values):,} values)"] = codec_rate(codec, values)
    mask_us, json_us = stage_costs_us(settings, codec, values)
    registry.close()
    if args.drop:
        AdminClient({"bootstrap.servers": settings.bootstrap_servers}).delete_topics([topic])[topic].result(60)

    tap = rates["shopflow tap, in-process (Tap + JsonLinesWriter)"] or Rate(1.0, 1.0)
    decode_us = 1e6 / codec_rate_of(rates)
    rest_us = 1e6 / tap.cpu - decode_us - mask_us - json_us
    table = "\n".join(f"| {k} | n/a (kcat missing) | | |" if v is None else
                      f"| {k} | {v.wall:,.0f} | {v.cpu:,.0f} | {tap.wall / v.wall:.0%} |" for k, v in rates.items())
    body = (
        f"{args.records:,} OrderPlaced records (1-3 lines, ~{sum(map(len, values)) // max(len(values), 1)} bytes "
        f"framed) on {args.partitions} partitions, read whole by each path in the same run; masking on (a payment "
        f"token per record). {made}.\n\n| path | records/s | records per CPU-second | tap in-process as a share of "
        f"it (records/s) |\n| --- | ---: | ---: | ---: |\n"
        f"{table}\n\nWhere the tap's CPU goes, per record: {1e6 / tap.cpu:.1f} µs in all, of which the codec's "
        f"decode (fastavro) {decode_us:.1f} µs, masking {mask_us:.1f} µs (Masker.mask_value, one pseudonym each), "
        f"the JSON line {json_us:.1f} µs (TapRecord.json_line, orjson), and the remaining {rest_us:.1f} µs the Kafka "
        f"client (librdkafka's fetch threads, a Message object per record) and the tap's own loop (offsets, bounds, "
        f"the TapRecord); the stages measured in memory on the sample. kcat is C and decodes nothing. Run took "
        f"{time.perf_counter() - began:.0f} s; load average "
        f"{load:.1f} at its start, {os.getloadavg()[0]:.1f} at its end (wall-clock rates on shared cores).\n\n"
        f"Command: `.venv/bin/python -m benchmarks.taps --records {args.records} --partitions {args.partitions}`"
        f"; CLI as measured: `shopflow tap {topic} --from-beginning --format jsonl --output /dev/null "
        f"--max-scanned {args.records}`; kcat as measured: `{' '.join(kcat_cmd[:-1])} '%s\\n'`"
    )
    write_section("taps", body)
    print(body)


if __name__ == "__main__":
    main()
