"""A tap's ``--where``: a CEL expression (as kafbat's Kafka UI chose) evaluated on each record as it is read.

The expression sees ``key``, ``value`` (the decoded value, a map for Avro and JSON), ``headers`` (a
map name -> string; non-UTF-8 values as their hex), ``partition``, ``offset``, ``timestamp`` (ms since
the epoch, an int), ``topic`` and ``schema`` (the record's full name, or null). A syntax error stops
the tap before it reads anything, with the column and examples; an expression that cannot be evaluated
on one record (a field that record does not have) is no match, counted, never a crash.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import celpy
from celpy import celtypes

from shopflow.taps.records import TapError, TapRecord, plain

EXAMPLES = ('value.order_id == "o-1"', 'headers["dlq.reason"] == "bad-magic-byte"',
            'schema.endsWith("OrderPlaced") && value.total_cents > 10000', 'has(value.address) && partition == 2')
VARIABLES = ("key", "value", "headers", "partition", "offset", "timestamp", "topic", "schema")

# cel-python logs every failed evaluation as an "Internal error"; here that is a record without the
# field asked for, counted in the tap's summary, not news for the log.
logging.getLogger("celpy.Transpiler").setLevel(logging.CRITICAL)
# The compiled runner evaluates through module globals of cel-python (it stores ``base_activation`` and
# reads ``CEL`` in celpy.evaluation's globals around an exec): two evaluations at once in two threads
# (taps served side by side) would read each other's records. The lock is held for one evaluation of
# one record, and the caps below bound what one evaluation can cost, so one user's filter cannot stall
# the other taps of an edge.
_EVALUATING = threading.Lock()
MAX_SOURCE = 1000  # characters of an expression
MAX_NESTING = 20  # brackets inside brackets
MAX_NODES = 600  # nodes of its syntax tree (``value.a == "x"`` has 13; 30 such comparisons fit)
# macros loop over a record's lists; nested, their cost multiplies (lines^k): two at most
MAX_MACROS = 2
_MACRO = re.compile(r"\.\s*(all|exists|exists_one|map|filter)\s*\(")


class RecordFilter:
    """A compiled ``--where`` expression; ``matches(record)`` is True, False, or raises ``FilterEvalError``."""

    def __init__(self, source: str):
        self.source = source
        # Only the variables the expression names are converted for each record (most of a filter's cost)
        self.uses = frozenset(re.findall(r"\b(" + "|".join(VARIABLES) + r")\b", source))
        _check_size(source)
        env = celpy.Environment(runner_class=celpy.CompiledRunner)
        try:
            ast = env.compile(source)
            nodes = sum(1 for _ in ast.iter_subtrees())
            if nodes > MAX_NODES:
                raise TapError(f"--where is too complex ({nodes} syntax nodes, at most {MAX_NODES}); filter on "
                               "fewer fields, or narrow the tap with --partition, --since/--until instead")
            self._program = env.program(ast)
        except TapError:
            raise
        except celpy.CELParseError as exc:
            raise TapError(_parse_message(source, exc)) from None
        except Exception as exc:  # noqa: BLE001 - cel-python raises assorted errors for what it cannot compile
            raise TapError(f"--where {source!r} cannot be compiled: {exc}. {_hint()}") from None

    def matches(self, record: TapRecord) -> bool:
        activation = activation_of(record, self.uses)
        try:
            with _EVALUATING:
                result = self._program.evaluate(activation)
        except celpy.CELEvalError as exc:
            raise FilterEvalError(_eval_reason(exc)) from None
        if isinstance(result, celpy.CELEvalError):
            raise FilterEvalError(_eval_reason(result))
        if not isinstance(result, bool | celtypes.BoolType):
            raise FilterEvalError(f"the expression gave {type(result).__name__} {result!r}, not true or false")
        return bool(result)


def _check_size(source: str) -> None:
    """Refuse an expression whose cost no filter needs, before parsing it (a parser recurses on nesting)."""
    if len(source) > MAX_SOURCE:
        raise TapError(f"--where is {len(source):,} characters long, at most {MAX_SOURCE:,}; filter on fewer "
                       "fields, or narrow the tap with --partition, --since/--until instead")
    depth = deepest = 0
    for char in source:
        depth += (char in "([{") - (char in ")]}")
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise TapError(f"--where nests brackets {deepest} deep, at most {MAX_NESTING}; write it flatter")
    macros = len(_MACRO.findall(source))
    if macros > MAX_MACROS:
        raise TapError(f"--where has {macros} list macros (all, exists, exists_one, map, filter), at most "
                       f"{MAX_MACROS}: each loops over a record's list, nested ones multiply")


class FilterEvalError(Exception):
    """The expression could not be evaluated on one record; that record does not match."""


def activation_of(record: TapRecord, uses: frozenset[str] = frozenset(VARIABLES)) -> dict[str, Any]:
    """The record's variables, those in ``uses`` only."""
    variables: dict[str, Callable[[], Any]] = {
        "key": lambda: to_cel(record.key),
        "value": lambda: to_cel(record.value),
        "headers": lambda: to_cel({name: _header_text(value) for name, value in record.headers}),
        "partition": lambda: celtypes.IntType(record.partition),
        "offset": lambda: celtypes.IntType(record.offset),
        "timestamp": lambda: celtypes.IntType(record.timestamp_ms),
        "topic": lambda: celtypes.StringType(record.topic),
        "schema": lambda: to_cel(record.schema),
    }
    return {name: make() for name, make in variables.items() if name in uses}


def to_cel(value: Any) -> Any:
    """A decoded value as CEL values: Avro times as CEL timestamps (``value.placed_at >
    timestamp("2026-12-01T00:00:00Z")``), UUIDs and decimals as strings, bytes as bytes."""
    if isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(k): to_cel(v) for k, v in value.items()})
    if isinstance(value, list):
        return celtypes.ListType([to_cel(v) for v in value])
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return celtypes.TimestampType(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    if isinstance(value, bytes):
        return celtypes.BytesType(value)
    return celtypes.StringType(plain(value))  # UUID, Decimal, date, time


def _header_text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value["hex"]


def _hint() -> str:
    return (f"Variables: {', '.join(VARIABLES)}. Examples: " + "; ".join(f"--where '{e}'" for e in EXAMPLES)
            + " (CEL: https://github.com/google/cel-spec/blob/master/doc/langdef.md)")


def _parse_message(source: str, exc: celpy.CELParseError) -> str:
    where = f" at column {exc.column}" if exc.column is not None else ""
    pointer = ""
    if exc.column is not None:
        pointer = f"\n  {source}\n  {' ' * max(exc.column - 1, 0)}^"
    return f"--where has a syntax error{where}:{pointer}\n{_hint()}"


def _eval_reason(exc: celpy.CELEvalError) -> str:
    # CELEvalError's args: (message, python exception type, its args)
    args = exc.args
    if len(args) >= 3 and isinstance(args[2], tuple) and args[2]:
        return f"{args[0]}: {args[2][0]}"
    return str(args[0]) if args else "evaluation error"
