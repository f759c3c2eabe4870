"""The tap's writers: JSON lines, the terminal table, CSV and Parquet read back with the same rows."""

from __future__ import annotations

import csv
import decimal
import io
import json
import uuid

import fastavro
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from taprecords import tap_record

from shopflow.taps.export import CsvWriter, JsonLinesWriter, ParquetWriter, TableWriter, flatten, open_writer
from shopflow.taps.records import DeadLetterInfo, TapError, TapSummary, plain

# Every Avro type the Parquet mapping handles, as a registry would hold it.
EVERY_TYPE = {
    "type": "record", "name": "Everything", "namespace": "shopflow.test", "fields": [
        {"name": "i", "type": "int"}, {"name": "l", "type": "long"}, {"name": "f", "type": "float"},
        {"name": "d", "type": "double"}, {"name": "b", "type": "boolean"}, {"name": "s", "type": "string"},
        {"name": "raw", "type": "bytes"},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "at_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "state", "type": {"type": "enum", "name": "State", "symbols": ["OPEN", "DONE"]}},
        {"name": "money", "type": {"type": "record", "name": "Money", "fields": [
            {"name": "amount_minor", "type": "long"}, {"name": "currency", "type": "string"}]}},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
            {"name": "sku", "type": "string"}, {"name": "price", "type": "Money"}]}}},
        {"name": "attributes", "type": {"type": "map", "values": "string"}},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "either", "type": ["null", "long", "string"], "default": None},
    ],
}


def decoded(value: dict, schema: dict = EVERY_TYPE) -> dict:
    """``value`` as the codec hands it to a tap: through fastavro both ways (datetimes, UUIDs, Decimals)."""
    parsed = fastavro.parse_schema(schema)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, value)
    buf.seek(0)
    return fastavro.schemaless_reader(buf, parsed, None)


def everything(n: int) -> dict:
    money = {"amount_minor": 100 * n, "currency": "EUR"}
    return decoded({
        "i": n, "l": 2**40 + n, "f": 0.5, "d": 1.25, "b": n % 2 == 0, "s": f"row {n}", "raw": b"\x00\xff",
        "at": 1_764_633_600_000 + n, "at_us": 1_764_633_600_000_000 + n, "day": 20_000 + n,
        "price": decimal.Decimal(f"{n}.99"), "id": str(uuid.UUID(int=n)), "state": "OPEN" if n % 2 else "DONE",
        "money": money, "lines": [{"sku": f"SKU-{n}", "price": money}], "attributes": {"color": "black"},
        "note": None if n % 2 else "gift", "either": n if n % 2 else f"text {n}",
    })


def as_json(value):
    """A value in the JSON the tap writes (``TapRecord.as_json``'s times, decimals, bytes), through JSON."""
    return json.loads(orjson.dumps(plain(value)))


def everything_records(count: int, partition: int = 0, schema_id: int = 11):
    return [tap_record(topic="things", partition=partition, offset=n, value=everything(n), key=f"k-{n}",
                       schema="shopflow.test.Everything", schema_id=schema_id) for n in range(count)]


def test_parquet_reads_back_with_the_same_rows_and_arrow_types_from_the_avro_schema(tmp_path):
    # Given records of every Avro type, decoded as a tap decodes them
    records = everything_records(5)

    # When they are exported with a row group every 2 rows
    writer = ParquetWriter(tmp_path, {11: EVERY_TYPE}.get, rows_per_group=2)
    for record in records:
        writer.write(record)
    files = writer.close(TapSummary())

    # Then one file named after its partition and offsets holds the same rows, in 3 row groups
    assert [f.name for f in files] == ["things-p0-0-4.parquet"]
    parquet = pq.ParquetFile(files[0])
    assert parquet.metadata.num_row_groups == 3
    table = parquet.read()
    types = {name: table.schema.field(name).type for name in table.column_names}
    assert (types["i"], types["l"], types["f"], types["raw"]) == (pa.int32(), pa.int64(), pa.float32(), pa.binary())
    assert (types["at"], types["at_us"]) == (pa.timestamp("ms", tz="UTC"), pa.timestamp("us", tz="UTC"))
    assert (types["day"], types["price"], types["id"]) == (pa.date32(), pa.decimal128(9, 2), pa.string())
    assert types["state"] == pa.dictionary(pa.int32(), pa.string())
    assert types["lines"] == pa.list_(pa.struct([("sku", pa.string()), ("price", types["money"])]))
    assert (types["attributes"], types["note"], types["either"]) == (pa.map_(pa.string(), pa.string()),
                                                                     pa.string(), pa.string())
    rows = table.to_pylist(maps_as_pydicts="strict")
    values = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    expected = [r.value | {"either": json.dumps(r.value["either"]) if isinstance(r.value["either"], int)
                           else r.value["either"]} for r in records]
    assert as_json(values) == as_json(expected)
    assert [(row["_partition"], row["_offset"], row["_key"]) for row in rows] == [(0, n, f"k-{n}") for n in range(5)]


def test_parquet_writes_one_file_per_partition_and_per_schema_when_a_topic_holds_several(tmp_path):
    user = {"type": "record", "name": "Seen", "namespace": "shopflow.test", "fields": [{"name": "n", "type": "int"}]}
    writer = ParquetWriter(tmp_path, {11: EVERY_TYPE, 12: user}.get)
    for record in everything_records(2, partition=0) + everything_records(3, partition=1):
        writer.write(record)
    writer.write(tap_record(topic="things", partition=1, offset=7, value={"n": 1}, schema="shopflow.test.Seen",
                            schema_id=12))
    writer.write(tap_record(topic="things", partition=1, offset=8, value=None, value_format="tombstone"))

    files = writer.close(TapSummary())

    assert [f.name for f in files] == ["things-p0-0-1-Everything-s11.parquet", "things-p1-0-2-Everything-s11.parquet",
                                       "things-p1-7-7-Seen-s12.parquet", "things-p1-8-8-undecoded.parquet"]
    assert pq.read_table(files[3]).to_pylist()[0]["_value_format"] == "tombstone"
    assert not list(tmp_path.glob(".*partial"))


def test_parquet_keeps_a_dead_letters_reason_beside_the_original(tmp_path):
    info = DeadLetterInfo("processing-failed", "boom", "things", 2, 40)
    record = everything_records(1)[0]
    writer = ParquetWriter(tmp_path, {11: EVERY_TYPE}.get)
    writer.write(tap_record(**{**{f: getattr(record, f) for f in ("value", "schema", "schema_id")},
                               "topic": "things.dlq", "dead_letter": info}))

    row = pq.read_table(writer.close(TapSummary())[0]).to_pylist()[0]

    assert row["_dead_letter"] == info.as_json()
    assert row["i"] == 0


def test_parquet_with_fields_has_only_the_fields_named(tmp_path):
    writer = open_writer("parquet", tmp_path, fields=["money.currency", "i"], writer_schema={11: EVERY_TYPE}.get)
    for record in everything_records(2):
        writer.write(record)

    table = pq.read_table(writer.close(TapSummary())[0])

    assert [c for c in table.column_names if not c.startswith("_")] == ["i", "money"]


def test_parquet_needs_a_directory(tmp_path):
    (tmp_path / "file").write_text("")

    with pytest.raises(TapError, match="give --output DIR"):
        open_writer("parquet", tmp_path / "file", writer_schema={}.get)
    with pytest.raises(TapError, match="--output DIR"):
        open_writer("parquet", None, writer_schema={}.get)


def test_jsonl_is_one_as_json_per_line(tmp_path):
    records = everything_records(3)
    writer = JsonLinesWriter(tmp_path / "out.jsonl")
    for record in records:
        writer.write(record)

    assert writer.close(TapSummary()) == [tmp_path / "out.jsonl"]
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [as_json(r.as_json()) for r in records]


def test_csv_reads_back_as_the_flattened_records(tmp_path):
    records = everything_records(3)
    writer = CsvWriter(tmp_path / "out.csv")
    for record in records:
        writer.write(record)
    writer.close(TapSummary())

    with (tmp_path / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))

    assert rows == [flatten(r.as_json()) for r in records]
    assert rows[0]["value.money.amount_minor"] == "0"
    assert json.loads(rows[0]["value.lines"]) == [{"sku": "SKU-0", "price": {"amount_minor": 0, "currency": "EUR"}}]
    assert rows[1]["value.note"] == ""


def test_csv_says_which_columns_came_after_the_header():
    out = io.StringIO()
    writer = CsvWriter(stream=out, sample=1)
    writer.write(tap_record(value={"a": 1}))
    writer.write(tap_record(offset=1, value={"a": 2, "b": {"c": 3}}))
    summary = TapSummary(message="read to the end")

    writer.close(summary)

    assert out.getvalue().splitlines()[0].endswith(",value.a,value_format,schema,schema_id,error,dead_letter")
    assert "1 column(s) first seen after the header were left out (value.b.c); name them with --fields" \
        in summary.message


def test_csv_with_fields_has_exactly_those_columns():
    out = io.StringIO()
    writer = CsvWriter(stream=out, fields=["b.c", "key", "a"])
    writer.write(tap_record(value={"a": 1, "b": {"c": 3}, "d": 4}))
    writer.close(TapSummary())

    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ["partition", "offset", "timestamp_ms", "key", "value.b.c", "value.a"],
        ["0", "0", "1764633600000", "k-1", "3", "1"]]


def test_a_table_to_a_file_is_written_and_named(tmp_path):
    writer = open_writer("table", tmp_path / "orders.txt")
    writer.write(tap_record(offset=41, value={"order_id": "o-1"}, schema="shopflow.orders.OrderPlaced"))

    assert writer.close(TapSummary()) == [tmp_path / "orders.txt"]
    assert "OrderPlaced" in (tmp_path / "orders.txt").read_text()


def test_the_table_shows_each_record_on_one_line():
    console = Console(file=io.StringIO(), width=200)
    writer = TableWriter(console, batch=2)
    writer.write(tap_record(offset=41, value={"order_id": "o-1"}, schema="shopflow.orders.OrderPlaced"))
    writer.write(tap_record(offset=42, value=None, value_format="tombstone"))
    writer.write(tap_record(offset=43, value={"hex": "00ff"}, value_format="hex", error="truncated: short",
                            dead_letter=DeadLetterInfo("truncated", "short", "orders", 0, 9)))
    writer.close(TapSummary())

    shown = console.file.getvalue()
    assert '{"order_id":"o-1"}' in shown and "(tombstone)" in shown
    assert "[dead letter: truncated] (undecodable: truncated: short)" in shown
    assert "2025-12-02 00:00:00.000" in shown


def order_placed(n: int) -> dict:
    money = {"amount_minor": 1999 + n, "currency": "EUR"}
    return {"event_id": str(uuid.UUID(int=n + 1)), "order_id": f"o-{n}", "user_id": f"u-{n % 3}",
            "lines": [{"sku": f"SKU-{i}", "quantity": i + 1, "unit_price": money} for i in range(n % 3 + 1)],
            "total": money, "payment_token": f"tok_{n % 2}", "occurred_at": 1_764_633_600_000 + n}


@pytest.mark.integration
def test_the_parquet_files_read_back_with_the_same_rows_as_the_jsonl(stack, codec, producer, topic_factory, tmp_path):
    from shopflow.schemas import load_schema
    from shopflow.taps.masking import Masker
    from shopflow.taps.reader import Tap, TapRequest

    # Given OrderPlaced records on two partitions of a real topic, framed by the codec
    topic = topic_factory("export", partitions=2)
    schema = load_schema("shopflow.orders.OrderPlaced")
    for n in range(12):
        producer.produce(topic, key=f"o-{n}", partition=n % 2,
                         value=codec.encode_value(f"{topic}-shopflow.orders.OrderPlaced", schema, order_placed(n)))
    producer.flush(10)

    # When one masked tap is written as JSON lines and as Parquet
    jsonl = JsonLinesWriter(tmp_path / "orders.jsonl")
    parquet = ParquetWriter(tmp_path / "parquet", codec.registry.schema_by_id)
    with Tap(stack, TapRequest(topic), codec=codec, masker=Masker("export-test", codec.registry.schema_by_id)) as tap:
        for record in tap.records():
            jsonl.write(record)
            parquet.write(record)
    jsonl.close(tap.summary)
    files = parquet.close(tap.summary)

    # Then there is one file per partition, and together they hold the JSON lines' rows, masked alike
    assert [f.name for f in files] == [f"{topic}-p0-0-5.parquet", f"{topic}-p1-0-5.parquet"]
    lines = [json.loads(line) for line in (tmp_path / "orders.jsonl").read_text().splitlines()]
    rows = [row for f in files for row in pq.read_table(f).to_pylist(maps_as_pydicts="strict")]
    by_position = lambda row: (row["_partition"], row["_offset"])  # noqa: E731
    assert sorted((line["partition"], line["offset"]) for line in lines) == sorted(map(by_position, rows))
    line_values = {(line["partition"], line["offset"]): line["value"] for line in lines}
    for row in rows:
        assert as_json({k: v for k, v in row.items() if not k.startswith("_")}) == line_values[by_position(row)]
    assert {line["value"]["payment_token"][:14] for line in lines} == {"payment-token:"}
