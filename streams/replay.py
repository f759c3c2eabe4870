"""Topology replay: saga scenarios run in-process, without a broker, on real RocksDB tables.

A scenario is a YAML file (tests/replay/scenarios/) in three parts:

    given:   stock per sku, timeout overrides, the clock's start
    when:    steps: place an order, cancel one, send any record, redeliver a record already sent,
             advance the clock (firing step deadlines), crash the worker at a point (``Crash``)
    then:    each order's status and path, each sku's stock, each order's payment, the records
             emitted (as "Record key" lines, in order) or the distinct ones, dead letters, crashes

Records go through the agents exactly as in the workers (``Engine.apply`` per ``ROUTES``), each one
encoded and decoded with its Avro schema on the way, so a record that breaks its contract fails the
scenario. Each record has an offset in its topic's partition; a redelivery keeps it. Tables are
RocksDB (rocksdict), one database per table partition, keys placed on partitions with Kafka's murmur2
as the broker would. After the steps the invariants are audited too. ``shopflow replay FILE`` runs one
and prints a readable diff when it fails; streams/replay_broker.py runs the same files on the broker.
"""

from __future__ import annotations

import difflib
import io
import tempfile
from collections import deque
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any, cast

import fastavro
import rocksdict
import yaml
from aiokafka.partitioner import DefaultPartitioner

from shopflow.schemas import load_schema
from shopflow.schemas.records import AvroRecord
from shopflow.streams.audit import audit, plain
from shopflow.streams.carts import due_expiries
from shopflow.streams.engine import INVENTORY_ROUTE, ORDERS_ROUTE, Engine, route_for
from shopflow.streams.inventory import SettledRows
from shopflow.streams.orders import due_timeouts
from shopflow.streams.payments import SimulatedGateway
from shopflow.streams.replay_steps import adjust_stock, cancel_order, cart_command, list_product, place_order
from shopflow.streams.runtime import Output, Unexpected
from shopflow.tables import TABLES, TableSpec
from shopflow.tables.values import StockState, decode, encode
from shopflow.topologies.catalog import TOPICS, Topic

DEFAULT_START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
_KAFKA_PARTITIONER = DefaultPartitioner()


def murmur2_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, positive, modulo), as Java and Faust producers place keys:
    the Kafka client's own (aiokafka, which Faust produces with)."""
    return _KAFKA_PARTITIONER(key, range(partitions), None)


class RocksTable:
    """A table on RocksDB with one database per partition, as Faust's rocksdb store keeps them.

    A value lives in the partition of the record that wrote it (a reservation row in its sku's), so
    reads and writes name the partition; by default it is the key's own.
    """

    def __init__(self, root: Path, spec: TableSpec):
        self.spec = spec
        self._dbs = [rocksdict.Rdict(str(root / spec.name / str(p))) for p in range(spec.partitions)]

    def partition(self, key: str) -> int:
        return murmur2_partition(key.encode(), len(self._dbs))

    def get(self, key: str, partition: int | None = None) -> dict | None:
        return decode(self._dbs[self.partition(key) if partition is None else partition].get(key.encode()))

    def set(self, key: str, value: dict | None, partition: int | None = None) -> None:
        db = self._dbs[self.partition(key) if partition is None else partition]
        if value is None:
            db.delete(key.encode())
        else:
            db[key.encode()] = encode(value)

    def items(self, partition: int | None = None) -> list[tuple[str, dict[str, Any]]]:
        dbs = self._dbs if partition is None else [self._dbs[partition]]
        pairs = ((cast(bytes, k), cast(bytes, v)) for db in dbs for k, v in db.items())  # written as bytes here
        return [(k.decode(), value) for k, v in pairs if (value := decode(v)) is not None]

    def close(self) -> None:
        for db in self._dbs:
            db.close()


@dataclass
class Sent:
    topic: str
    record: str  # short name
    value: dict
    offset: int = 0  # in its partition of the topic

    @property
    def line(self) -> str:
        key = self.value.get(_by_topic(self.topic).key, "")
        return f"{self.record} {key}"


def _by_topic(name: str) -> Topic:
    return next(t for t in TOPICS if t.name == name)


def _avro_round_trip(record: AvroRecord) -> tuple[AvroRecord, dict[str, Any]]:
    """The record as a consumer gets it after the wire (its schema's encode and decode): typed for the
    agents, and plain (uuids as strings, timestamps as epoch ms) for the log, the audit and redeliveries."""
    parsed = _parsed(record.AVRO_NAME)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record.to_avro())
    buf.seek(0)
    decoded = cast(dict[str, Any], fastavro.schemaless_reader(buf, parsed, None))  # a record schema's value
    return type(record).from_avro(decoded), plain(decoded)


@cache
def _parsed(fullname: str) -> dict[str, Any]:
    return cast(dict[str, Any], fastavro.parse_schema(load_schema(fullname)))  # a record schema


@dataclass
class Crash:
    """Where a worker dies while handling one record, and what of its work survives.

    ``at``: ``state`` (its table writes reached the changelog, none of its records did), ``writes``
    (only its first ``k`` table writes did: one changelog partition keeps them in order), ``output``
    (the writes and its first ``k`` records), ``commit`` (everything but the offset commit), or
    ``lost-state`` (all its records went out, its table writes were lost). ``record``/``key``/``nth``
    pick the delivery it happens on; ``uncommitted`` more records handled before it were not committed
    either (Faust commits on an interval) and come back too, in their order.
    """

    record: str
    key: str
    at: str = "commit"
    k: int = 0
    nth: int = 1
    uncommitted: int = 0

    POINTS = ("state", "writes", "output", "commit", "lost-state")

    def __post_init__(self):
        if self.at not in self.POINTS:
            raise ValueError(f"crash at {self.at!r}: use one of {', '.join(self.POINTS)}")


@dataclass
class Replay:
    store: Path
    now_ms: int = DEFAULT_START_MS
    engine: Engine = field(default_factory=Engine)
    log: list[Sent] = field(default_factory=list)
    dead_letters: list[tuple[Sent, str]] = field(default_factory=list)
    transitions: list[tuple[str, str, str, str]] = field(default_factory=list)
    crashes: list[Crash] = field(default_factory=list)  # armed, each fires once
    crashed: list[str] = field(default_factory=list)  # what fired, for the report

    def __post_init__(self) -> None:
        self.tables = {spec.name: RocksTable(self.store, spec) for spec in TABLES}
        # (record, its offset when delivered again; None when it is new and gets the next offset)
        self._queue: deque[tuple[Output, int | None]] = deque()
        self._ends: dict[tuple[str, int], int] = {}  # (topic, partition) -> next offset
        # The last records handled, for an uncommitted window.
        self._handled: deque[tuple[Output, int]] = deque(maxlen=64)
        self._seen: dict[tuple[str, str], int] = {}  # (record, key) -> deliveries, for crash matching
        self.deliveries: list[tuple[str, str, int, int, int]] = []
        self.settled = SettledRows()

    def close(self) -> None:
        for table in self.tables.values():
            table.close()

    def seed_stock(self, sku: str, on_hand: int) -> None:
        self.tables["inventory"].set(sku, StockState(sku=sku, on_hand=on_hand).to_dict())

    async def send(self, output: Output) -> None:
        self._queue.append((output, None))
        await self._drain()

    async def redeliver(self, sent: Sent) -> None:
        """Deliver a record again exactly as it was (same offset, same event id), as after a crash before
        its offset was committed."""
        record = next(r for r in _by_topic(sent.topic).values if r.__name__ == sent.record)
        self._queue.append((Output(record.from_avro(sent.value)), sent.offset))
        await self._drain()

    async def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)
        for output in due_timeouts(self.tables["orders"].items(), self.now_ms):
            self._queue.append((output, None))
        idle_ms = int(self.engine.cart_idle_s * 1000)
        self._queue.extend((o, None) for o in due_expiries(self.tables["carts"].items(), self.now_ms, idle_ms))
        await self._drain()

    async def _drain(self) -> None:
        while self._queue:
            output, offset = self._queue.popleft()
            record, value = _avro_round_trip(output.record)
            if offset is None:
                at = (output.topic.name, murmur2_partition(output.key.encode(), output.topic.partitions))
                offset = self._ends[at] = self._ends.get(at, -1) + 1
                self.log.append(Sent(output.topic.name, output.short, value, offset))
            sent = Sent(output.topic.name, output.short, value, offset)
            route = route_for(output.topic.name)
            if route is None:
                continue  # a fact for readers outside the saga (the orders topic)
            table = self.tables[route.table.name] if route.table else None
            key = self.engine.key_of(route, record) if table else ""
            partition = table.partition(key) if table else 0
            load = partial(table.get, partition=partition) if table else None
            try:
                result = await self.engine.apply(route, record, load, self.now_ms, offset)
            except Unexpected as exc:
                self.dead_letters.append((sent, str(exc)))
                continue
            if route is INVENTORY_ROUTE and table is not None and load is not None:
                self.settled.track(partition, result.writes, load, self.now_ms, partial(table.items, partition))
            crash = self._crash_on(sent, len(result.outputs), len(result.writes))
            outputs = result.outputs
            writes = list(result.writes.items())
            if crash is not None:
                writes = [] if crash.at == "lost-state" else writes[:crash.k] if crash.at == "writes" else writes
            for k, v in writes:
                if table is not None:  # a route without a table writes nothing
                    table.set(k, v, partition)
            if result.transition and route is ORDERS_ROUTE and (crash is None or crash.at != "lost-state"):
                self.transitions.append((key, *result.transition))
            if crash is not None:
                if crash.at == "output":
                    outputs = outputs[:crash.k]
                elif crash.at in ("state", "writes"):
                    outputs = []
                self._restart(output, offset, crash, outputs)
                continue
            self._queue.extend((o, None) for o in outputs)
            self._handled.append((output, offset))

    def _crash_on(self, sent: Sent, caused: int, writes: int) -> Crash | None:
        key = sent.line.split(" ", 1)[1]
        n = self._seen[(sent.record, key)] = self._seen.get((sent.record, key), 0) + 1
        self.deliveries.append((sent.record, key, n, caused, writes))
        for crash in self.crashes:
            if crash.record == sent.record and crash.key == key and crash.nth == n:
                self.crashes.remove(crash)
                self.crashed.append(f"{crash.at}{':' + str(crash.k) if crash.at == 'output' else ''} "
                                    f"on {sent.line} #{n}")
                return crash
        return None

    def _restart(self, output: Output, offset: int, crash: Crash, survived: list[Output]) -> None:
        """The worker died: what survived is on the topics, the offsets since the last commit come back
        (in their order, before anything not yet handled) and what it kept in memory is gone."""
        again = list(self._handled)[-crash.uncommitted:] if crash.uncommitted else []
        self._queue.extend((o, None) for o in survived)
        self._queue.extendleft(reversed([*again, (output, offset)]))
        self._handled.clear()
        self.settled = SettledRows(self.settled.keep_ms)

    def report(self, stuck_after_ms: int = 10**12):
        return audit(((s.record, s.value) for s in self.log), dict(self.tables["inventory"].items()),
                     dict(self.tables["payments"].items()), self.now_ms, stuck_after_ms,
                     orders=dict(self.tables["orders"].items()))


# --- scenarios ----------------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    problems: list[str]
    # Every record an agent handled: (record, key, nth delivery, records it caused, table writes), to crash on.
    deliveries: list[tuple[str, str, int, int, int]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def run_scenario(path: Path, store: Path | None = None, crash: Crash | None = None) -> Outcome:
    """Run a scenario; with ``crash``, the same scenario with a worker dying at that point, judged by the
    same Then (records emitted compared without the copies the restart sends again)."""
    doc = yaml.safe_load(path.read_text())
    given, then = doc.get("given") or {}, dict(doc.get("then") or {})
    if crash is not None and "emitted" in then:
        then["distinct"] = then.pop("emitted")
    with tempfile.TemporaryDirectory(prefix="shopflow-replay-") as tmp:
        replay = Replay(Path(store or tmp), engine=Engine(timeouts=given.get("timeouts", {}),
                                                          gateway=SimulatedGateway(),
                                                          cart_idle_s=given.get("cart_idle_s", 1800.0),
                                                          low_stock_threshold=given.get("low_stock_threshold")))
        try:
            for sku, on_hand in (given.get("stock") or {}).items():
                replay.seed_stock(sku, on_hand)
            if crash is not None:
                replay.crashes.append(crash)
            for step in doc.get("when") or []:
                await _step(replay, step)
            problems = _compare(replay, then)
            if crash is not None and replay.crashes:
                problems.append(f"the crash {crash} never happened: no such delivery")
            return Outcome(doc.get("name", path.stem), problems, replay.deliveries)
        finally:
            replay.close()


async def _step(replay: Replay, step: dict) -> None:
    (kind, arg), = step.items()
    if kind == "place":
        await replay.send(place_order(arg, replay.now_ms))
    elif kind == "cancel":
        await replay.send(cancel_order(arg, replay.now_ms))
    elif kind == "advance":
        await replay.advance(float(arg))
    elif kind == "redeliver":
        # {record: PaymentRequested, key: o-1, nth: 1}: the nth such record already sent, again
        matches = [s for s in replay.log if s.record == arg["record"] and s.line.split(" ", 1)[1] == arg["key"]]
        if not matches:
            raise ValueError(f"nothing to redeliver: no {arg['record']} {arg['key']} was sent")
        await replay.redeliver(matches[arg.get("nth", 1) - 1])
    elif kind == "adjust":
        await replay.send(adjust_stock(arg, replay.now_ms))
    elif kind == "list":
        await replay.send(list_product(arg, replay.now_ms))
    elif kind == "cart":
        await replay.send(cart_command(arg, replay.now_ms))
    elif kind == "crash":
        # {record: ReserveStock, key: SKU-A, at: state|output|commit|lost-state, k?, nth?, uncommitted?}
        replay.crashes.append(Crash(**arg))
    else:
        raise ValueError(f"unknown step {kind!r}: use place, cancel, advance, redeliver, adjust, list, cart or crash")


def _compare(replay: Replay, then: dict) -> list[str]:
    problems: list[str] = []
    orders = dict(replay.tables["orders"].items())
    for order_id, want in (then.get("orders") or {}).items():
        have = orders.get(order_id) or {}
        problems += _fields(f"order {order_id}", want, have)
    stock = dict(replay.tables["inventory"].items())
    for sku, want in (then.get("stock") or {}).items():
        have = dict(stock.get(sku) or {})
        have["available"] = have.get("on_hand", 0) - have.get("reserved", 0)
        problems += _fields(f"stock {sku}", want, have)
    payments = dict(replay.tables["payments"].items())
    for order_id, want in (then.get("payments") or {}).items():
        problems += _fields(f"payment {order_id}", want, payments.get(order_id) or {})
    carts = dict(replay.tables["carts"].items())
    for cart_id, want in (then.get("carts") or {}).items():
        problems += _fields(f"cart {cart_id}", want, carts.get(cart_id) or {})
    if "emitted" in then:
        got = [s.line for s in replay.log]
        if got != then["emitted"]:
            diff = "\n".join(difflib.unified_diff(then["emitted"], got, "expected", "replayed", lineterm="", n=2))
            problems.append("records emitted differ:\n" + diff)
    if "distinct" in then:
        firsts, ids = [], set()
        for sent in replay.log:
            if sent.value["event_id"] not in ids:
                ids.add(sent.value["event_id"])
                firsts.append(sent.line)
        if firsts != then["distinct"]:
            diff = "\n".join(difflib.unified_diff(then["distinct"], firsts, "expected", "replayed", lineterm="", n=2))
            problems.append("distinct records (copies with the same event id dropped) differ:\n" + diff)
    if "crashes" in then and replay.crashed != then["crashes"]:
        problems.append(f"crashes: expected {then['crashes']}, got {replay.crashed} "
                        f"(armed, never met: {replay.crashes})")
    want_dl = then.get("dead_letters", 0)
    if len(replay.dead_letters) != want_dl:
        problems.append(f"dead letters: expected {want_dl}, got {len(replay.dead_letters)}: "
                        + "; ".join(reason for _, reason in replay.dead_letters))
    report = replay.report()
    problems += [f"invariant: {v}" for v in report.violations]
    return problems


def _fields(what: str, want: dict, have: dict) -> list[str]:
    return [f"{what}: {k} expected {v!r}, got {have.get(k)!r}" for k, v in want.items() if have.get(k) != v]
