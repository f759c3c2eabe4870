"""The order saga declared as data: its states, the rules that move an order between them, the effects
it causes in other contexts and how each is undone. `check` proves the declaration sound, `mermaid`
draws it, and the orders agent looks its rules up (`ORDER_SAGA.rules(state, record)`), so the agent,
the diagram and the replay tests cannot drift apart.

How to read it:

- An order is created by the first rule that fires from `START` (a PlaceOrder for an unknown id) and
  then lives in one state. A `Transition` moves it on a trigger: a record arriving on a catalog topic,
  or a `Timeout` armed when the state is entered. Several transitions on one trigger are told apart by
  their guards.
- An `Effect` is something another context does at the saga's request and that must be undone if the
  order does not go through: stock reserved (undone by ReleaseStock, answered by StockReleased) and
  payment captured (undone by RefundRequested, answered by PaymentRefunded). A transition names the
  effects it compensates; their commands are emitted for every line (or the charge) where the effect
  may have happened: every line not released yet, answered or not (a release of nothing changes
  nothing), and the charge once a capture is known.
- An `Absorb` handles a late or duplicate record in a state without moving the order: it changes
  nothing or it compensates. Answers to requests that were still in flight when an order was cancelled
  land here: a late StockReserved is released and a late PaymentSucceeded is refunded.
- A record with no rule in the order's state cannot happen in a sound saga (`check` proves every
  record that can reach a state has a rule there); an agent meeting one sends it to the dead-letter topic.

There is no CANCELLING state that waits for StockReleased/PaymentRefunded before the order ends:
compensations are commands that cannot be refused (a release of a reservation that is gone changes
nothing; the payments agent retries a refund until the gateway answers) and they are produced in the
same commit as the state change, so waiting for their acknowledgements would add a state that can only
stall. The acknowledgements are absorbed in the terminal states and matched by the live auditor.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from shopflow.schemas import load_schema
from shopflow.topologies.catalog import (
    ORDER_COMMANDS,
    ORDERS,
    PAYMENT_REQUESTS,
    PAYMENT_RESULTS,
    STOCK_REQUESTS,
    STOCK_RESULTS,
    Topic,
)

START: Final = "[*]"  # the source of the rules that create an order (Mermaid's spelling of it)


class Outcome(StrEnum):
    OPEN = "open"  # the saga is still running: the state needs a way out
    DONE = "done"  # terminal, the effects stand (the order went through)
    UNDONE = "undone"  # terminal, every effect the order caused must be compensated


@dataclass(frozen=True)
class State:
    name: str
    doc: str
    outcome: Outcome = Outcome.OPEN
    # Why an open state without a timeout cannot stay put for ever; empty when a timeout guarantees it.
    progress: str = ""

    @property
    def terminal(self) -> bool:
        return self.outcome is not Outcome.OPEN


@dataclass(frozen=True)
class Message:
    """One record type on one catalog topic: what a rule reacts to, emits or awaits."""

    topic: Topic
    record: str  # full name, e.g. shopflow.inventory.StockRejected

    @property
    def short(self) -> str:
        return self.record.rsplit(".", 1)[-1]

    @property
    def key(self) -> str:
        return self.record


@dataclass(frozen=True)
class Timeout:
    """A deadline armed when an order enters a state (not when a self-transition re-enters it, so a
    trickle of answers cannot postpone it); it fires only if the order is still in that state."""

    name: str
    seconds: float  # the default; deployments may override it by name

    @property
    def short(self) -> str:
        return f"{self.name} ({self.seconds:g}s)"

    @property
    def key(self) -> str:
        return self.name


Trigger = Message | Timeout
FieldValue = str | bool


@dataclass(frozen=True)
class Emit:
    message: Message
    per_line: bool = False  # one record per order line instead of one per order
    values: tuple[tuple[str, FieldValue], ...] = ()  # fields the rule fixes, e.g. (("reason", "TIMEOUT"),)
    note: str = ""  # who produces it, when that is not the orders agent

    def value(self, name: str) -> FieldValue | None:
        return dict(self.values).get(name)


@dataclass(frozen=True)
class Effect:
    """A change another context makes at the saga's request, with how it is undone."""

    name: str
    scope: Literal["order", "line"]  # happens once per order or once per order line
    request: Message  # the command asking for it
    evidence: Message  # the answer saying it happened
    refusal: Message | None  # the answer saying it did not; None when it cannot be refused
    compensation: Message | None  # the command undoing it
    acknowledgement: Message | None  # the answer saying it is undone
    # The command that makes it final when the order goes through (a reservation consumed by the
    # confirmed order); its compensation still undoes it afterwards.
    settlement: Message | None = None


@dataclass(frozen=True)
class Transition:
    source: str  # a state name, or START for the rules that create the order
    target: str
    trigger: Trigger
    guard: str = ""
    emits: tuple[Emit, ...] = ()
    compensates: tuple[str, ...] = ()  # effect names: undone wherever they are known to have happened
    # Effect names whose requests are all answered once this fires (the guard knows): no answer is still
    # in flight, so the target need not expect a late one.
    settles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Absorb:
    """A late or duplicate record in a state: the order stays where it is."""

    states: tuple[str, ...]
    trigger: Message
    why: str
    compensates: tuple[str, ...] = ()


Rule = Transition | Absorb


@dataclass(frozen=True)
class Saga:
    name: str
    events: Topic  # the saga's own facts; records emitted anywhere else ask another context for something
    states: tuple[State, ...]
    effects: tuple[Effect, ...]
    transitions: tuple[Transition, ...]
    absorbs: tuple[Absorb, ...]

    def state(self, name: str) -> State:
        for s in self.states:
            if s.name == name:
                return s
        raise KeyError(f"saga {self.name} has no state {name!r}")

    def effect(self, name: str) -> Effect:
        for e in self.effects:
            if e.name == name:
                return e
        raise KeyError(f"saga {self.name} has no effect {name!r}")

    @property
    def terminal_states(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states if s.terminal)

    def rules(self, state: str, trigger: str) -> tuple[Rule, ...]:
        """The rules for a trigger (record full name or timeout name) reaching an order in `state`."""
        moves: tuple[Rule, ...] = tuple(
            t for t in self.transitions if t.source == state and t.trigger.key == trigger
        )
        return moves + tuple(a for a in self.absorbs if state in a.states and a.trigger.key == trigger)

    def timeouts(self, state: str) -> tuple[Timeout, ...]:
        """The deadlines to arm when an order enters `state`."""
        return tuple(t.trigger for t in self.transitions if t.source == state and isinstance(t.trigger, Timeout))

    def outputs(self, rule: Rule) -> tuple[Emit, ...]:
        """Everything a rule produces: its own records, then the commands of the effects it compensates."""
        return (rule.emits if isinstance(rule, Transition) else ()) + self.compensations(rule)

    def compensations(self, rule: Rule) -> tuple[Emit, ...]:
        """The commands undoing the effects a rule compensates, for each line or charge where they happened."""
        return tuple(
            Emit(effect.compensation, per_line=effect.scope == "line")
            for effect in map(self.effect, rule.compensates)
            if effect.compensation is not None
        )


# --- the order saga ---------------------------------------------------------------------------------

PENDING: Final = "PENDING"
RESERVED: Final = "RESERVED"
CONFIRMED: Final = "CONFIRMED"
CANCELLED: Final = "CANCELLED"
REFUNDED: Final = "REFUNDED"

PLACE_ORDER = Message(ORDER_COMMANDS, "shopflow.orders.PlaceOrder")
CANCEL_ORDER = Message(ORDER_COMMANDS, "shopflow.orders.CancelOrder")
ORDER_PLACED = Message(ORDERS, "shopflow.orders.OrderPlaced")
ORDER_CONFIRMED = Message(ORDERS, "shopflow.orders.OrderConfirmed")
ORDER_CANCELLED = Message(ORDERS, "shopflow.orders.OrderCancelled")
RESERVE_STOCK = Message(STOCK_REQUESTS, "shopflow.inventory.ReserveStock")
RELEASE_STOCK = Message(STOCK_REQUESTS, "shopflow.inventory.ReleaseStock")
COMMIT_STOCK = Message(STOCK_REQUESTS, "shopflow.inventory.CommitStock")
STOCK_RESERVED = Message(STOCK_RESULTS, "shopflow.inventory.StockReserved")
STOCK_REJECTED = Message(STOCK_RESULTS, "shopflow.inventory.StockRejected")
STOCK_RELEASED = Message(STOCK_RESULTS, "shopflow.inventory.StockReleased")
PAYMENT_REQUESTED = Message(PAYMENT_REQUESTS, "shopflow.payments.PaymentRequested")
REFUND_REQUESTED = Message(PAYMENT_REQUESTS, "shopflow.payments.RefundRequested")
PAYMENT_SUCCEEDED = Message(PAYMENT_RESULTS, "shopflow.payments.PaymentSucceeded")
PAYMENT_FAILED = Message(PAYMENT_RESULTS, "shopflow.payments.PaymentFailed")
PAYMENT_REFUNDED = Message(PAYMENT_RESULTS, "shopflow.payments.PaymentRefunded")

# Inventory answers within milliseconds, so a minute only passes under real lag (a rebalance); a
# payment provider that has not answered in 30 s is not going to, and the customer is waiting.
RESERVATION_TIMEOUT = Timeout("reservation_timeout", 60)
PAYMENT_TIMEOUT = Timeout("payment_timeout", 30)

STOCK = "stock reserved"
PAYMENT = "payment captured"


def _cancelled(reason: str, refunded: bool = False) -> Emit:
    values: tuple[tuple[str, FieldValue], ...] = (("reason", reason),)
    return Emit(ORDER_CANCELLED, values=values + ((("refunded", True),) if refunded else ()))


ORDER_SAGA = Saga(
    name="order",
    events=ORDERS,
    states=(
        State(PENDING, "placed, reserving stock"),
        State(RESERVED, "all lines reserved, payment requested"),
        State(CONFIRMED, "paid, stock kept for the order", Outcome.DONE),
        State(CANCELLED, "ended without going through, reservations released", Outcome.UNDONE),
        State(REFUNDED, "cancelled after payment, charge refunded and stock released", Outcome.UNDONE),
    ),
    effects=(
        Effect(STOCK, "line", RESERVE_STOCK, STOCK_RESERVED, STOCK_REJECTED, RELEASE_STOCK, STOCK_RELEASED,
               settlement=COMMIT_STOCK),
        Effect(PAYMENT, "order", PAYMENT_REQUESTED, PAYMENT_SUCCEEDED, PAYMENT_FAILED, REFUND_REQUESTED,
               PAYMENT_REFUNDED),
    ),
    transitions=(
        Transition(START, PENDING, PLACE_ORDER, "valid", emits=(
            Emit(ORDER_PLACED),
            Emit(RESERVE_STOCK, per_line=True),
        )),
        Transition(START, CANCELLED, PLACE_ORDER, "invalid", emits=(_cancelled("INVALID"),)),
        Transition(PENDING, PENDING, STOCK_RESERVED, "lines still unanswered"),
        Transition(PENDING, RESERVED, STOCK_RESERVED, "all lines reserved",
                   emits=(Emit(PAYMENT_REQUESTED),), settles=(STOCK,)),
        # The other lines' answers may still be in flight: CANCELLED releases them when they land.
        Transition(PENDING, CANCELLED, STOCK_REJECTED, emits=(_cancelled("OUT_OF_STOCK"),),
                   compensates=(STOCK,)),
        Transition(PENDING, CANCELLED, CANCEL_ORDER, emits=(_cancelled("BY_CUSTOMER"),), compensates=(STOCK,)),
        Transition(PENDING, CANCELLED, RESERVATION_TIMEOUT, emits=(_cancelled("TIMEOUT"),),
                   compensates=(STOCK,)),
        # A confirmed order consumes its reservations (on_hand and reserved both drop); a later
        # ReleaseStock of a consumed reservation (cancel after payment) puts the units back.
        Transition(RESERVED, CONFIRMED, PAYMENT_SUCCEEDED,
                   emits=(Emit(ORDER_CONFIRMED), Emit(COMMIT_STOCK, per_line=True)), settles=(PAYMENT,)),
        Transition(RESERVED, CANCELLED, PAYMENT_FAILED, emits=(_cancelled("PAYMENT_FAILED"),),
                   compensates=(STOCK,), settles=(PAYMENT,)),
        # Cancelling does not wait for the charge's outcome: a capture landing later is refunded.
        Transition(RESERVED, CANCELLED, CANCEL_ORDER, emits=(_cancelled("BY_CUSTOMER"),), compensates=(STOCK,)),
        Transition(RESERVED, CANCELLED, PAYMENT_TIMEOUT, emits=(_cancelled("TIMEOUT"),), compensates=(STOCK,)),
        Transition(CONFIRMED, REFUNDED, CANCEL_ORDER, emits=(_cancelled("BY_CUSTOMER", refunded=True),),
                   compensates=(STOCK, PAYMENT)),
    ),
    absorbs=(
        Absorb((PENDING, RESERVED, CONFIRMED, CANCELLED, REFUNDED), PLACE_ORDER,
               "a retried PlaceOrder: the order id is taken"),
        Absorb((CANCELLED, REFUNDED), CANCEL_ORDER, "already cancelled"),
        Absorb((CANCELLED,), STOCK_RESERVED, "a line reserved after the order was cancelled",
               compensates=(STOCK,)),
        Absorb((CANCELLED,), STOCK_REJECTED, "a line rejected after the order was cancelled: nothing to release"),
        Absorb((CANCELLED, REFUNDED), STOCK_RELEASED, "a release done; the auditor matches it"),
        Absorb((CANCELLED,), PAYMENT_SUCCEEDED, "a charge captured after the order was cancelled",
               compensates=(PAYMENT,)),
        Absorb((CANCELLED,), PAYMENT_FAILED, "a charge failed after the order was cancelled: nothing to refund"),
        Absorb((CANCELLED, REFUNDED), PAYMENT_REFUNDED, "a refund done; the auditor matches it"),
    ),
)


# --- check ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Facts:
    """What may be true of an order in a state, over every path that leads there."""

    happened: frozenset[str] = frozenset()  # effects that may have happened and are not compensated
    pending: frozenset[str] = frozenset()  # effects whose request may still be answered
    undoing: frozenset[str] = frozenset()  # effects whose compensation may still be acknowledged

    def __or__(self, other: _Facts) -> _Facts:
        return _Facts(self.happened | other.happened, self.pending | other.pending, self.undoing | other.undoing)


def check(saga: Saga) -> list[str]:
    """Every problem with the saga's declaration, one line each; empty when it is sound."""
    problems = _names(saga)
    if problems:  # the graph checks below would only repeat a dangling name
        return problems
    problems += _catalog(saga)
    problems += _values(saga)
    problems += _graph(saga)
    problems += _determinism(saga)
    problems += _effects(saga)
    facts = _facts(saga)
    problems += _compensations(saga, facts)
    problems += _arrivals(saga, facts)
    return problems


def _rule_name(rule: Rule) -> str:
    if isinstance(rule, Transition):
        guard = f" [{rule.guard}]" if rule.guard else ""
        return f"{rule.source} --{rule.trigger.short}{guard}--> {rule.target}"
    return f"{'|'.join(rule.states)} absorbing {rule.trigger.short}"


def _names(saga: Saga) -> list[str]:
    problems: list[str] = []
    states = [s.name for s in saga.states]
    effects = [e.name for e in saga.effects]
    problems += [f"state {n} is declared twice" for n in _twice(states)]
    problems += [f"effect {n!r} is declared twice" for n in _twice(effects)]
    if START in states:
        problems.append(f"{START} is the start of the saga, not a state")
    for rule in (*saga.transitions, *saga.absorbs):
        if isinstance(rule, Transition):
            named = [n for n in (rule.source,) if n != START] + [rule.target]
            effect_names = (*rule.compensates, *rule.settles)
        else:
            named, effect_names = list(rule.states), rule.compensates
        problems += [f"{_rule_name(rule)}: no state {n}" for n in named if n not in states]
        problems += [f"{_rule_name(rule)}: no effect {n!r}" for n in effect_names if n not in effects]
    return problems


def _twice(names: list[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})


def _messages(saga: Saga) -> Iterable[tuple[str, Message]]:
    for rule in (*saga.transitions, *saga.absorbs):
        if isinstance(rule.trigger, Message):
            yield _rule_name(rule), rule.trigger
        for emit in rule.emits if isinstance(rule, Transition) else ():
            yield _rule_name(rule), emit.message
    for effect in saga.effects:
        for message in (effect.request, effect.evidence, effect.refusal, effect.compensation,
                        effect.acknowledgement):
            if message is not None:
                yield f"effect {effect.name!r}", message


def _catalog(saga: Saga) -> list[str]:
    return [
        f"{where}: topic {m.topic.name} does not carry {m.record}" for where, m in _messages(saga)
        if m.record not in m.topic.values
    ]


def _values(saga: Saga) -> list[str]:
    """Fields a rule fixes in what it emits must exist in the record's schema, enums within their symbols."""
    problems: list[str] = []
    for t in saga.transitions:
        for emit in t.emits:
            for name, value in emit.values:
                problem = _field_problem(emit.message.record, name, value)
                if problem:
                    problems.append(f"{_rule_name(t)}: {emit.message.short}.{name} {problem}")
    return problems


def _field_problem(record: str, name: str, value: FieldValue) -> str | None:
    try:
        schema = load_schema(record)
    except KeyError:
        return "has no schema"
    field = next((f for f in schema["fields"] if f["name"] == name), None)
    if field is None:
        return "is no field of the schema"
    kind = field["type"]
    if isinstance(kind, dict) and kind.get("type") == "enum" and value not in kind["symbols"]:
        return f"= {value!r} is not one of {', '.join(kind['symbols'])}"
    if kind == "boolean" and not isinstance(value, bool):
        return f"= {value!r} is not a boolean"
    return None


def _graph(saga: Saga) -> list[str]:
    problems: list[str] = []
    terminal = set(saga.terminal_states)
    reached = _reachable({START}, _edges(saga.transitions))
    ends = _reachable(terminal, _edges(saga.transitions, backwards=True))
    for s in saga.states:
        if s.name not in reached:
            problems.append(f"{s.name}: unreachable from {START}")
        if not s.terminal and s.name not in ends:
            problems.append(f"{s.name}: no path to a terminal state")
        times_out = any(
            isinstance(t.trigger, Timeout) and t.source == s.name != t.target for t in saga.transitions
        )
        if not s.terminal and not times_out and not s.progress:
            problems.append(f"{s.name}: no timeout leaves it and nothing else guarantees it progresses")
    for t in saga.transitions:
        if t.source in terminal and t.target not in terminal:
            problems.append(f"{_rule_name(t)}: terminal {t.source} leads back into the saga")
        if t.source in terminal and isinstance(t.trigger, Timeout):
            problems.append(f"{_rule_name(t)}: a timeout cannot fire in a terminal state")
    durations: dict[str, set[float]] = defaultdict(set)
    for t in saga.transitions:
        if isinstance(t.trigger, Timeout):
            durations[t.trigger.name].add(t.trigger.seconds)
    problems += [f"timeout {name} has several durations" for name, d in durations.items() if len(d) > 1]
    return problems


def _edges(transitions: Iterable[Transition], backwards: bool = False) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for t in transitions:
        a, b = (t.target, t.source) if backwards else (t.source, t.target)
        out[a].append(b)
    return out


def _reachable(starts: set[str], edges: dict[str, list[str]]) -> set[str]:
    seen, todo = set(starts), deque(starts)
    while todo:
        for nxt in edges.get(todo.popleft(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _determinism(saga: Saga) -> list[str]:
    """Rules sharing a state and trigger must be told apart by distinct guards, or an agent must guess."""
    problems: list[str] = []
    groups: dict[tuple[str, str], list[Rule]] = defaultdict(list)
    for t in saga.transitions:
        groups[t.source, t.trigger.key].append(t)
    for a in saga.absorbs:
        for state in a.states:
            groups[state, a.trigger.key].append(a)
    for (state, _), rules in groups.items():
        if len(rules) < 2:
            continue
        guards = [r.guard for r in rules if isinstance(r, Transition)]
        if len(guards) < len(rules) or "" in guards or len(set(guards)) < len(guards):
            problems.append(f"{state}: {' and '.join(map(_rule_name, rules))} are not told apart by guards")
    return problems


def _effects(saga: Saga) -> list[str]:
    """Every request to another context is a declared effect, and every effect can be undone."""
    problems = [f"effect {e.name!r} has no compensation" for e in saga.effects if e.compensation is None]
    requests = {e.request for e in saga.effects} | {e.settlement for e in saga.effects if e.settlement}
    compensations = {e.compensation: e.name for e in saga.effects if e.compensation is not None}
    for t in saga.transitions:
        for emit in t.emits:
            if emit.message.topic == saga.events or emit.message in requests:
                continue
            if emit.message in compensations:
                problems.append(f"{_rule_name(t)}: emits {emit.message.short} itself; name the effect "
                                f"{compensations[emit.message]!r} in compensates instead")
            else:
                problems.append(f"{_rule_name(t)}: emits {emit.message.short} on {emit.message.topic.name}, "
                                "no declared effect's request, so nothing says how to undo it")
    return problems


def _facts(saga: Saga) -> dict[str, _Facts]:
    """A may-analysis over every path from START, absorbs counting as self-transitions."""
    moves: list[tuple[str, str, Rule]] = [(t.source, t.target, t) for t in saga.transitions]
    moves += [(s, s, a) for a in saga.absorbs for s in a.states]
    facts: dict[str, _Facts] = {START: _Facts()}
    todo = deque([START])
    while todo:
        state = todo.popleft()
        for source, target, rule in moves:
            if source != state:
                continue
            after = facts.get(target, _Facts()) | _after(saga, rule, facts[state])
            if after != facts.get(target):
                facts[target] = after
                todo.append(target)
    return facts


def _after(saga: Saga, rule: Rule, before: _Facts) -> _Facts:
    emits = rule.emits if isinstance(rule, Transition) else ()
    requested = {e.name for e in saga.effects if any(emit.message == e.request for emit in emits)}
    settled = set(rule.settles) if isinstance(rule, Transition) else set()
    undone = set(rule.compensates)
    return _Facts(
        happened=frozenset((before.happened | _evidenced(saga, rule)) - undone),
        pending=frozenset((before.pending | requested) - settled),
        undoing=before.undoing | undone,
    )


def _evidenced(saga: Saga, rule: Rule) -> frozenset[str]:
    return frozenset(e.name for e in saga.effects if rule.trigger.key == e.evidence.key)


def _compensations(saga: Saga, facts: dict[str, _Facts]) -> list[str]:
    """An order ending undone leaves no effect behind: neither one known when it ends nor a late one."""
    problems: list[str] = []
    undone = {s.name for s in saga.states if s.outcome is Outcome.UNDONE}
    for t in saga.transitions:
        if t.target in undone and t.source in facts:
            happened = facts[t.source].happened | _evidenced(saga, t)
            problems += [f"{_rule_name(t)}: forgets to compensate {e.name!r} ({_undo(e)})"
                         for e in saga.effects if e.name in happened and e.name not in t.compensates]
    for a in saga.absorbs:
        if undone & set(a.states):
            problems += [f"{_rule_name(a)}: a late {a.trigger.short} is not compensated ({_undo(e)})"
                         for e in saga.effects if e.name in _evidenced(saga, a) and e.name not in a.compensates]
    return problems


def _arrivals(saga: Saga, facts: dict[str, _Facts]) -> list[str]:
    """Every record that can reach an order in a state has a rule there: commands at any time, answers
    while their request or compensation may still be in flight."""
    problems: list[str] = []
    answers = {m.key for e in saga.effects for m in (e.evidence, e.refusal, e.acknowledgement) if m is not None}
    commands = dict.fromkeys(r.trigger for r in (*saga.transitions, *saga.absorbs)
                             if isinstance(r.trigger, Message) and r.trigger.key not in answers)
    for s in saga.states:
        if s.name not in facts:
            continue  # unreachable, reported already
        arriving = [(c, "a command") for c in commands]
        for e in saga.effects:
            if e.name in facts[s.name].pending:
                arriving += [(m, f"an answer to {e.request.short}") for m in (e.evidence, e.refusal) if m]
            if e.name in facts[s.name].undoing and e.acknowledgement:
                arriving.append((e.acknowledgement, f"an answer to {_undo(e)}"))
        problems += [f"{s.name}: {m.short} may arrive ({what}) but no rule handles it"
                     for m, what in arriving if not saga.rules(s.name, m.key)]
    return problems


def _undo(effect: Effect) -> str:
    return effect.compensation.short if effect.compensation else "no compensation declared"


# --- mermaid ----------------------------------------------------------------------------------------


def mermaid(saga: Saga) -> str:
    """The saga as a Mermaid stateDiagram-v2: transitions labelled trigger [guard] / outputs, and the
    absorbed late or duplicate records as a note on each state that has them."""
    lines = ["stateDiagram-v2"]
    lines += [f"    {s.name} : {_text(s.doc)}" for s in saga.states]
    lines += [f"    {t.source} --> {t.target} : {_text(_label(saga, t))}" for t in saga.transitions]
    lines += [f"    {s.name} --> {START}" for s in saga.states if s.terminal]
    for s in saga.states:
        absorbed = [a for a in saga.absorbs if s.name in a.states]
        if absorbed:
            lines.append(f"    note right of {s.name}")
            lines.append("        late or duplicate, state unchanged")
            lines += [f"        {_text(_label(saga, a))}" for a in absorbed]
            lines.append("    end note")
    return "\n".join(lines) + "\n"


def _label(saga: Saga, rule: Rule) -> str:
    head = rule.trigger.short + (f" [{rule.guard}]" if isinstance(rule, Transition) and rule.guard else "")
    outputs = [_emitted(e) for e in (rule.emits if isinstance(rule, Transition) else ())]
    outputs += [f"compensate {_emitted(e)}" for e in saga.compensations(rule)]
    if not outputs and isinstance(rule, Absorb):
        outputs = ["ignored"]
    return f"{head} / {' + '.join(outputs)}" if outputs else head


def _emitted(emit: Emit) -> str:
    values = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in emit.values)
    return emit.message.short + (f"({values})" if values else "") + (" per line" if emit.per_line else "")


def _text(text: str) -> str:
    # Mermaid ends a label at ':' or ';' and a line at a newline.
    return " ".join(text.replace(":", ",").replace(";", ",").split())
