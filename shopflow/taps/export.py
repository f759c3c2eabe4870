"""Where a tap's records go: JSON lines, a terminal table, CSV or Parquet files, behind one protocol.

Every writer takes ``TapRecord``s one at a time (``write``) and is closed with the scan's
``TapSummary`` (``close``), which returns the files it wrote. JSON lines are ``TapRecord.as_json``,
the one JSON shape of a record; CSV flattens that same shape into dotted columns; Parquet types its
columns from the Avro schema the records were written with (``shopflow.taps.arrow``) and writes one
file per partition (and per writer schema when a topic holds several), named after the offsets it
holds, ``<topic>-p<P>-<first>-<last>.parquet``, flushing a row group every ``rows_per_group`` rows
so a long export keeps its memory bounded.
"""

from __future__ import annotations

import csv
import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shopflow.taps.arrow import ArrowType, UnsupportedAvroType, json_text, record_columns
from shopflow.taps.records import TapError, TapRecord, TapSummary

FORMATS = ("jsonl", "table", "csv", "parquet")
WriterSchema = Callable[[int], dict[str, Any] | None]


class RecordWriter(Protocol):
    def write(self, record: TapRecord) -> None: ...
    # what is written so far, out now: a followed tap calls it whenever it has read what there is
    def flush(self) -> None: ...
    def close(self, summary: TapSummary) -> list[Path]: ...


def open_writer(fmt: str, output: Path | None = None, *, fields: list[str] | None = None,
                writer_schema: WriterSchema | None = None, console: Console | None = None) -> RecordWriter:
    """The writer for ``--format`` (``jsonl``, ``table``, ``csv``, ``parquet``) to ``output`` (a file; a
    directory for Parquet; None: standard output). ``writer_schema``: schema by id, needed by Parquet."""
    if fmt == "jsonl":
        return JsonLinesWriter(output)
    if fmt == "table":
        if output is not None:  # a table in a file: as wide as a terminal, no colours
            return TableWriter(Console(file=open(output, "w"), width=160, no_color=True), path=output)  # noqa: SIM115
        return TableWriter(console or Console())
    if fmt == "csv":
        return CsvWriter(output, fields=fields)
    if fmt == "parquet":
        if output is None or writer_schema is None:
            raise TapError("--format parquet writes files: give a directory with --output DIR")
        return ParquetWriter(output, writer_schema, fields=fields)
    raise TapError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


class JsonLinesWriter:
    """One ``TapRecord.json_line()`` (the ``as_json`` shape) per line, to a file or standard output."""

    def __init__(self, output: Path | None = None, stream: IO[bytes] | None = None):
        self.path = output
        self._own = stream is None and output is not None
        self._out: IO[bytes] = stream or (open(output, "wb") if output else sys.stdout.buffer)  # noqa: SIM115

    def write(self, record: TapRecord) -> None:
        self._out.write(record.json_line())

    def flush(self) -> None:
        self._out.flush()

    def close(self, summary: TapSummary) -> list[Path]:
        self._out.flush()
        if self._own:
            self._out.close()
        return [self.path] if self.path else []


class TableWriter:
    """A rich table on the terminal, one line per record: partition, offset, time (UTC), key, record name
    and the value's JSON cut to the width left. Rows are printed ``batch`` at a time, so a followed
    topic shows up as it arrives."""

    HEADERS = ("p", "offset", "time (UTC)", "key", "schema", "value")
    VALUE_WIDTH = 400  # cut before rich does, so a huge value costs nothing to lay out

    def __init__(self, console: Console, batch: int = 50, path: Path | None = None):
        self.console, self.batch, self.path = console, batch, path  # path: the file console writes to, closed here
        self._rows: list[tuple[str, ...]] = []

    def write(self, record: TapRecord) -> None:
        self._rows.append((str(record.partition), str(record.offset), _table_time(record.timestamp_ms),
                           json_text(record.key) if record.key is not None else "",
                           (record.schema or "").rpartition(".")[2], value_summary(record, self.VALUE_WIDTH)))
        if len(self._rows) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        # rich squeezes no-wrap columns to nothing when a value is long: size them here instead, the
        # value taking what the others leave of the terminal's width
        widths = [min(max(len(row[i]) for row in [self.HEADERS, *self._rows]), 24) for i in range(5)]
        value_width = max(20, self.console.width - sum(widths) - 3 * len(widths) - 2)
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
        for i, header in enumerate(self.HEADERS):
            table.add_column(header, justify="right" if i < 2 else "left", no_wrap=True, overflow="ellipsis",
                             width=widths[i] if i < 5 else value_width)
        for row in self._rows:
            table.add_row(*(Text(cell) for cell in row))  # Text: a value's "[...]" is data, not rich markup
        self.console.print(table)
        self._rows.clear()

    def close(self, summary: TapSummary) -> list[Path]:
        self.flush()
        if self.path is None:
            return []
        self.console.file.close()
        return [self.path]


def value_summary(record: TapRecord, width: int) -> str:
    """A record's value on one line: its JSON (as ``TapRecord.as_json`` has it), or what it is instead."""
    if record.value_format == "tombstone":
        text = "(tombstone)"
    else:
        text = json_text(record.value)
        if record.error:
            text = f"(undecodable: {record.error}) {text}"
    if record.dead_letter is not None:
        text = f"[dead letter: {record.dead_letter.reason}] {text}"
    return text if len(text) <= width else text[: width - 1] + "…"


def _table_time(timestamp_ms: int) -> str:
    return dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class CsvWriter:
    """CSV of ``TapRecord.as_json()`` flattened into dotted columns (``value.total.amount_minor``); lists
    (an order's lines, headers) are JSON text in their cell. The header is ``fields`` when given (paths
    in the value, or top-level names such as ``key``), else every column seen in the first ``sample``
    records; a column first seen later is left out and the summary says so."""

    LEAD = ("partition", "offset", "timestamp_ms", "key")

    def __init__(self, output: Path | None = None, *, fields: list[str] | None = None, sample: int = 100,
                 stream: IO[str] | None = None):
        self.path = output
        self._own = stream is None and output is not None
        self._out: IO[str] = stream or (open(output, "w", newline="") if output else sys.stdout)  # noqa: SIM115
        self.sample = sample
        self._header: list[str] | None = None
        self._chosen = bool(fields)  # columns named by --fields: the others are left out on purpose
        if fields:
            self._header = list(dict.fromkeys([*self.LEAD, *(_column_of(f) for f in fields)]))
        self._pending: list[dict[str, str]] = []
        self._writer: csv.DictWriter[str] | None = None
        self.left_out: set[str] = set()

    def write(self, record: TapRecord) -> None:
        row = flatten(record.as_json())
        if self._writer is not None:
            self._write_row(row)
            return
        self._pending.append(row)
        if self._header is not None or len(self._pending) >= self.sample:
            self._start()

    def _start(self) -> None:
        if self._header is None:
            self._header = list(dict.fromkeys(column for row in self._pending for column in row))
        self._writer = csv.DictWriter(self._out, fieldnames=self._header, extrasaction="ignore")
        self._writer.writeheader()
        for row in self._pending:
            self._write_row(row)
        self._pending.clear()

    def _write_row(self, row: dict[str, str]) -> None:
        assert self._writer is not None and self._header is not None
        if not self._chosen and not row.keys() <= set(self._header):
            self.left_out.update(row.keys() - set(self._header))
        self._writer.writerow(row)

    def flush(self) -> None:
        """Rows so far out; before ``sample`` rows were seen, the header is what they have."""
        if self._writer is None and self._pending:
            self._start()
        self._out.flush()

    def close(self, summary: TapSummary) -> list[Path]:
        if self._writer is None and self._pending:
            self._start()
        if self.left_out:
            shown = ", ".join(sorted(self.left_out)[:5]) + (", …" if len(self.left_out) > 5 else "")
            summary.message += (f" CSV: {len(self.left_out)} column(s) first seen after the header were left out"
                                f" ({shown}); name them with --fields to include them.")
        self._out.flush()
        if self._own:
            self._out.close()
        return [self.path] if self.path else []


def _column_of(field: str) -> str:
    top = field.partition(".")[0]
    return field if top in _TOP_LEVEL else f"value.{field}"


_TOP_LEVEL = {"topic", "partition", "offset", "timestamp_ms", "key", "headers", "value", "value_format", "schema",
              "schema_id", "error", "dead_letter"}


def flatten(record_json: dict[str, Any]) -> dict[str, str]:
    """A record's JSON as dotted columns of text: nested objects flattened, lists as JSON, null empty."""
    out: dict[str, str] = {}
    _flatten_into(out, "", record_json)
    return out


def _flatten_into(out: dict[str, str], prefix: str, value: Any) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten_into(out, f"{prefix}.{k}" if prefix else str(k), v)
    elif value is None:
        out[prefix] = ""
    elif isinstance(value, bool):
        out[prefix] = "true" if value else "false"
    elif isinstance(value, (str, int, float)):
        out[prefix] = str(value)
    elif isinstance(value, dt.datetime | dt.date):
        out[prefix] = value.isoformat()
    else:
        out[prefix] = json_text(value)


_META = [("_partition", ArrowType(pa.int32())), ("_offset", ArrowType(pa.int64())),
         ("_timestamp", ArrowType(pa.timestamp("ms", tz="UTC"))), ("_key", ArrowType(pa.string())),
         ("_headers", ArrowType(pa.list_(pa.struct([("name", pa.string()), ("value", pa.string())]))))]
_DEAD_LETTER = ("_dead_letter", ArrowType(pa.struct([
    ("reason", pa.string()), ("detail", pa.string()), ("source_topic", pa.string()),
    ("source_partition", pa.int32()), ("source_offset", pa.int64())])))
_RAW = [("_value_format", ArrowType(pa.string())), ("_value", ArrowType(pa.string())),
        ("_error", ArrowType(pa.string()))]


class _ParquetFile:
    """The rows of one partition written with one schema (or not decoded by any): one Parquet file."""

    def __init__(self, directory: Path, first: TapRecord, columns: list[tuple[str, ArrowType]]):
        self.topic, self.partition, self.schema, self.schema_id = first.topic, first.partition, first.schema, \
            first.schema_id
        self.dead_letters = first.dead_letter is not None
        self.columns = [*_META, *([_DEAD_LETTER] if self.dead_letters else []), *columns]
        self.arrow_schema = pa.schema([pa.field(name, t.type) for name, t in self.columns])
        self.temp = directory / f".{self.topic}-p{self.partition}-s{self.schema_id}.parquet.partial"
        self.first = self.last = first.offset
        self._buffer: list[list[Any]] = [[] for _ in self.columns]
        self._writer: pq.ParquetWriter | None = None
        self.rows = 0

    def add(self, record: TapRecord, cells: list[Any]) -> None:
        meta: list[Any] = [record.partition, record.offset, record.timestamp_ms,
                None if record.key is None else json_text(record.key),
                [{"name": n, "value": None if v is None else json_text(v)} for n, v in record.headers]]
        if self.dead_letters:
            meta.append(None if record.dead_letter is None else record.dead_letter.as_json())
        for column, cell in zip(self._buffer, meta + cells, strict=True):
            column.append(cell)
        self.last = record.offset
        self.rows += 1

    @property
    def buffered(self) -> int:
        return len(self._buffer[0])

    def flush(self) -> None:
        if not self.buffered:
            return
        arrays = []
        for (name, arrow), cells in zip(self.columns, self._buffer, strict=True):
            try:
                arrays.append(pa.array(cells, type=arrow.type))
            except (pa.ArrowException, TypeError, ValueError) as exc:
                raise TapError(f"column {name} of {self.schema or 'undecoded records'} (partition {self.partition})"
                               f" does not fit Arrow type {arrow.type}: {exc}; export it as --format jsonl") from None
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.temp, self.arrow_schema)
        self._writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.arrow_schema))
        self._buffer = [[] for _ in self.columns]

    def finish(self, name: str) -> Path:
        self.flush()
        if self._writer is not None:
            self._writer.close()
        final = self.temp.with_name(name)
        self.temp.replace(final)
        return final


def _cell(value: Any, arrow: ArrowType) -> Any:
    return value if value is None or arrow.convert is None else arrow.convert(value)


class ParquetWriter:
    """Parquet files in ``directory``: one per partition and writer schema, Arrow types from the schema;
    with ``fields`` (the tap's ``--fields``), only the top-level fields they name."""

    def __init__(self, directory: Path, writer_schema: WriterSchema, rows_per_group: int = 50_000,
                 fields: list[str] | None = None):
        if directory.exists() and not directory.is_dir():
            raise TapError(f"{directory} is a file: Parquet export writes a directory of files, give --output DIR")
        directory.mkdir(parents=True, exist_ok=True)
        self.directory, self._writer_schema, self.rows_per_group = directory, writer_schema, rows_per_group
        self._files: dict[tuple[int, int | None], _ParquetFile] = {}
        self._columns: dict[int | None, list[tuple[str, ArrowType]]] = {}
        self._kept = {f.partition(".")[0] for f in fields} if fields else None

    def write(self, record: TapRecord) -> None:
        schema_id = record.schema_id if isinstance(record.value, dict) else None
        columns = self._columns_of(schema_id)
        if columns is None:
            schema_id, columns = None, _RAW
        file = self._files.get((record.partition, schema_id))
        if file is None:
            file = self._files[(record.partition, schema_id)] = _ParquetFile(self.directory, record, columns)
        value = record.value
        if schema_id is None:
            cells: list[Any] = [record.value_format, None if value is None else json_text(value), record.error]
        else:
            cells = [_cell(value.get(name), arrow) for name, arrow in columns]
        file.add(record, cells)
        if file.buffered >= self.rows_per_group:
            file.flush()

    def _columns_of(self, schema_id: int | None) -> list[tuple[str, ArrowType]] | None:
        if schema_id is None:
            return None
        if schema_id not in self._columns:
            schema = self._writer_schema(schema_id)
            try:
                columns = record_columns(schema) if schema else _RAW
                self._columns[schema_id] = columns if self._kept is None or columns is _RAW else [
                    (name, arrow) for name, arrow in columns if name in self._kept]
            except UnsupportedAvroType as exc:
                raise TapError(f"schema id {schema_id} cannot be exported to Parquet: {exc}; "
                               "use --format jsonl") from None
        columns = self._columns[schema_id]
        return None if columns is _RAW else columns

    def flush(self) -> None:
        """Nothing: a Parquet file is readable once closed, so rows go out by row group and at the end."""

    def close(self, summary: TapSummary) -> list[Path]:
        several = len({schema_id for _, schema_id in self._files}) > 1
        written = []
        for file in self._files.values():
            name = f"{file.topic}-p{file.partition}-{file.first}-{file.last}"
            if several:
                name += f"-{(file.schema or 'record').rpartition('.')[2]}-s{file.schema_id}" \
                    if file.schema_id is not None else "-undecoded"
            written.append(file.finish(name + ".parquet"))
        return sorted(written)
