"""A saga drawn as a Mermaid state diagram (``shopflow topology draw``): deterministic, so the drawing
in the docs can be checked against the declaration.
"""

from __future__ import annotations

from shopflow.topologies.saga_model import START, Absorb, Emit, Rule, Saga, Transition


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

