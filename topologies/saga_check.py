"""Proof that a saga's declaration is sound: names resolve, messages are on topics that carry them,
fixed fields exist in their schemas, every state is reachable and can end, rules are deterministic,
every effect can be undone and is undone wherever an order ends undone, and every record that can
reach a state has a rule there. ``shopflow topology check`` and the tests run it on ORDER_SAGA.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from shopflow.schemas import load_schema
from shopflow.schemas.records import AvroRecord
from shopflow.topologies.saga_model import START, Effect, FieldValue, Message, Outcome, Rule, Saga, Timeout, Transition


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
    for rule in saga.all_rules:
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
    for rule in saga.all_rules:
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
        f"{where}: topic {m.topic.name} does not carry {m.record.AVRO_NAME}" for where, m in _messages(saga)
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


def _field_problem(record: type[AvroRecord], name: str, value: FieldValue) -> str | None:
    try:
        schema = load_schema(record.AVRO_NAME)
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
    groups: dict[tuple[str, type[AvroRecord] | str], list[Rule]] = defaultdict(list)
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
    commands = dict.fromkeys(r.trigger for r in saga.all_rules
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
