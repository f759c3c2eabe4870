"""The vocabulary a saga is declared in: states, messages (a record class on a catalog topic), timeouts,
effects on other contexts and how each is undone, the transitions and absorbs that move an order, and
``Saga`` that holds them and answers the agent's look-ups. The order saga itself is topologies/saga.py;
``saga_check`` proves a declaration sound and ``saga_draw`` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from shopflow.schemas.records import AvroRecord
from shopflow.topologies.catalog import Topic

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
    record: type[AvroRecord]  # e.g. StockRejected

    @property
    def short(self) -> str:
        return self.record.__name__

    @property
    def key(self) -> type[AvroRecord]:
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
    def all_rules(self) -> tuple[Rule, ...]:
        """Transitions, then absorbs."""
        return (*self.transitions, *self.absorbs)

    @property
    def terminal_states(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.states if s.terminal)

    def rules(self, state: str, trigger: type[AvroRecord] | str) -> tuple[Rule, ...]:
        """The rules for a trigger (a record class, or a timeout's name) reaching an order in `state`."""
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
