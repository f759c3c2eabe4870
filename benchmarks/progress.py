"""Progress of a benchmark's steps: a tqdm bar on a terminal, one line per step anywhere else.

tqdm redraws its bar with carriage returns; written to a log or CI's output, every frame stays
(thousands of lines per run). ``tqdm`` here is tqdm's own bar when stderr is a terminal and
otherwise counts quietly and says once, when the step ends, how far it got and how fast.
It takes tqdm's arguments, so a benchmark changes only its import.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import Any

from tqdm import tqdm as _terminal_bar


class tqdm(_terminal_bar):  # named as what it replaces: `from tqdm import tqdm` is the only change
    def __init__(self, iterable: Iterable[Any] | None = None, *args: Any, **kwargs: Any):
        self._as_lines = not kwargs.get("disable") and not (kwargs.get("file") or sys.stderr).isatty()
        if self._as_lines:
            kwargs["disable"] = True
            self._label = kwargs.get("desc") or "progress"
            self._expected = kwargs.get("total") or (len(iterable) if isinstance(iterable, Sized) else None)
            self._count = kwargs.get("initial", 0)
            self._began = time.monotonic()
            self._said = False
        super().__init__(iterable, *args, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        if not self._as_lines:
            yield from super().__iter__()
            return
        for item in self.iterable:
            yield item
            self._count += 1
        self.close()

    def update(self, n: float = 1) -> bool | None:
        if self._as_lines:
            self._count += n
            return None
        return super().update(n)

    def close(self) -> None:
        if self._as_lines and not self._said:
            self._said = True
            elapsed = time.monotonic() - self._began
            of = f"/{self._expected:,}" if self._expected is not None else ""
            rate = f", {self._count / elapsed:,.0f}/s" if elapsed > 0 else ""
            print(f"{self._label}: {self._count:,}{of} in {elapsed:.1f}s{rate}", file=sys.stderr, flush=True)
        super().close()
