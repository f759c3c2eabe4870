"""Run mypy over ShopFlow's packages under their installed names (``shopflow.streams``, ...).

Why a link tree: the code lives in top-level folders (``streams/``, ``api/``, ...) that setuptools
maps into the one ``shopflow`` namespace (pyproject's ``[tool.setuptools.package-dir]``). The
editable install resolves those names with an import hook that mypy cannot follow, and pointing
mypy at the folders themselves would name the modules ``streams.app`` instead of
``shopflow.streams.app``, so every ``from shopflow.streams import ...`` would be unresolved. This
script rebuilds ``.cache/typecheck/`` from that mapping (one folder per package, a symlink per
module), runs mypy there with the settings of ``[tool.mypy]``, and prints each finding under the
file's path in the repository. Exit status is mypy's.

    .venv/bin/python .ci/typecheck.py [extra mypy args]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".cache" / "typecheck"
# Not installed, but imported by their own name (``python -m benchmarks.saga``): checked as they are.
PLAIN_PACKAGES = ["benchmarks"]


def source_dir(package: str, package_dir: dict[str, str]) -> Path:
    """Where setuptools takes ``package`` from: its own mapping, else its nearest mapped parent's + the rest."""
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        mapped = package_dir.get(".".join(parts[:n]))
        if mapped is not None:
            return ROOT / mapped / Path(*parts[n:])
    return ROOT / Path(*parts)


def build_tree() -> dict[str, str]:
    """The link tree of every package; returns each link's path (relative to TREE) -> the file it points to."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = config.get("package-dir", {})
    packages: list[str] = [*config["packages"], *PLAIN_PACKAGES]
    shutil.rmtree(TREE, ignore_errors=True)
    links = {}
    for package in packages:
        target = TREE / Path(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for module in sorted(source_dir(package, package_dir).iterdir()):
            if module.suffix in (".py", ".pyi"):
                (target / module.name).symlink_to(module)
                links[str((target / module.name).relative_to(TREE))] = str(module.relative_to(ROOT))
    return links


def main() -> int:
    links = build_tree()
    top = sorted({link.split(os.sep)[0] for link in links})
    args = [arg for name in top for arg in ("-p", name)]
    # Run from inside the tree so the repository's own folders (shopflow/, api/, ...) cannot shadow it.
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                           "--cache-dir", str(ROOT / ".cache" / "mypy"), *args, *sys.argv[1:]],
                          cwd=TREE, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        path, sep, rest = line.partition(":")
        print(f"{links.get(path, path)}{sep}{rest}")
    sys.stderr.write(proc.stderr)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
