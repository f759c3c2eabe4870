"""Consumer lag, computed by ShopFlow for every consumer group on the broker (see ``monitor``).

``LagMonitor`` samples (used by ``shopflow lag`` and the ops console), ``LagCollector`` exports the
samples to Prometheus, ``evaluate`` holds the status rules and the lag arithmetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shopflow.lag.evaluate import Status
from shopflow.lag.monitor import GroupLag, LagMonitor, LagReport, PartitionLag
from shopflow.lag.offsets import GroupNotFound, LagError, Member

__all__ = ["GroupLag", "GroupNotFound", "LagCollector", "LagError", "LagMonitor", "LagReport", "Member",
           "PartitionLag", "Status"]

if TYPE_CHECKING:
    from shopflow.lag.collector import LagCollector


def __getattr__(name: str) -> Any:
    # prometheus_client is loaded only by the processes that export metrics, not by every `shopflow lag`.
    if name == "LagCollector":
        from shopflow.lag.collector import LagCollector

        return LagCollector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
