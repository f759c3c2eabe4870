"""A correction to faust-streaming 0.15.3 (pinned) that the saga's promise needs: no offset is committed
past a record the agents have not processed.

Faust commits, per partition, the run of consecutive acknowledged offsets. Its test for a hole at the
head of that run is off by one (``Consumer._new_offset`` in faust/transport/consumer.py:
``min(acked) - committed > 1``, where ``committed`` is already the next offset to read), so a record
missing right at the committed offset is committed over. Records do go missing there: the fetcher
drops records fetched under a consumer generation that a rebalance has just replaced. In
benchmarks.peer one PlaceOrder of 5,000 was never processed and its offset was committed: an order
lost for good, with no dead letter and no error.

``hold_commits_at_holes`` makes the commit wait at such a hole; ``heal_holes`` (on the worker's timer)
then seeks the partition back to it, so the record is fetched again. What followed it comes again too,
and the handlers' idempotency answers it with copies. Only for at_least_once: with exactly_once Faust
tracks the holes transaction markers leave (``Consumer._gap``) itself.
"""

from __future__ import annotations

import logging
import time

from faust.transport.consumer import Consumer
from faust.types import TP

log = logging.getLogger("shopflow.worker")

# Partition -> (the offset the commit waits at, since when), for the partitions this process holds.
HOLES: dict[TP, tuple[int, float]] = {}


def hold_commits_at_holes() -> None:
    original = Consumer._new_offset
    if getattr(original, "shopflow_fix", False):
        return

    def _new_offset(self: Consumer, tp: TP) -> int | None:
        acked, committed = self._acked[tp], self._committed_offset[tp]
        if acked and committed is not None and not self._gap[tp] and min(acked) > committed:
            if tp not in HOLES:
                log.warning("%s[%d]: offset %d was not processed but %d was: the commit waits there",
                            tp.topic, tp.partition, committed, min(acked))
            HOLES.setdefault(tp, (committed, time.monotonic()))
            return None
        HOLES.pop(tp, None)
        return original(self, tp)

    _new_offset.shopflow_fix = True  # type: ignore[attr-defined]
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]


async def heal_holes(app, after_s: float) -> list[TP]:
    """Seek every partition whose commit has waited at a hole for ``after_s`` back to it."""
    healed = []
    for tp, (offset, since) in list(HOLES.items()):
        if tp not in app.consumer.assignment():
            HOLES.pop(tp, None)
        elif time.monotonic() - since >= after_s:
            log.warning("%s[%d]: reading again from offset %d, a record the agents never got",
                        tp.topic, tp.partition, offset)
            HOLES.pop(tp, None)
            await app.consumer.seek(tp, offset)
            healed.append(tp)
    return healed
