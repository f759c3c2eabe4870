"""Writes one benchmark's section of benchmarks/results.md, replacing that section's previous run."""

from __future__ import annotations

import os
import platform
import re
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.md"


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = f"Python {platform.python_version()}"
    return f"{os.cpu_count()} cores ({cpu}), {python}, {platform.system()} {platform.release()}"


def write_section(name: str, body: str) -> None:
    empty = "# Benchmark results\n\nEach section is replaced by the latest run of its benchmark.\n"
    text = RESULTS.read_text() if RESULTS.exists() else empty
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = f"## {name}\n\n_run {when} on {machine()}_\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)
