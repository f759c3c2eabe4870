"""Builds a pinned Go module's command with the machine's Go into the stack's cache, once.

Used by the servers the stack builds from source (deploy/object_store.py, deploy/mail_server.py). A
build goes to ``<name>-<version>.partial`` and is renamed into place with a ``.complete`` marker only
when it succeeded, so an interrupted build is never taken for a finished one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from shopflow.deploy import StackError


def go_binary() -> str:
    go = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if Path(p).exists()), None)
    if go is None:
        raise StackError("Go is not installed (some servers are built from their Go module): install Go 1.26 "
                         "(/usr/local/go/bin on this machine kind), put it on PATH, then `shopflow stack fetch`")
    return go


def built(dest: Path) -> bool:
    return (dest / ".complete").exists()


def build_go_module(module: str, version: str, binary: str, dest: Path, *, ldflags: str = "") -> Path:
    """``go install module@version`` into ``dest`` (no-op when built); the path of ``dest/binary``."""
    if built(dest):
        return dest / binary
    go = go_binary()
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # GOTOOLCHAIN=local: the machine's Go builds it, or the build fails saying why (no silent download).
    env = {**os.environ, "GOBIN": str(partial), "CGO_ENABLED": "0", "GOTOOLCHAIN": "local",
           "GOFLAGS": "-trimpath -buildvcs=false"}
    args = [go, "install", *([f"-ldflags={ldflags}"] if ldflags else []), f"{module}@{version}"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not (partial / binary).exists():
        shutil.rmtree(partial, ignore_errors=True)
        reason = (proc.stderr.strip().splitlines() or [f"go exited {proc.returncode}"])[-1]
        raise StackError(f"could not build {binary} {version} ({reason}); check that the Go module proxy is "
                         "reachable (`go env GOPROXY`) and run `shopflow stack fetch` again")
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    (dest / ".complete").write_text(version + "\n")
    return dest / binary
