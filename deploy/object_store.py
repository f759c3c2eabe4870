"""The stack's S3-compatible object store for files and product images: versitygw on its POSIX backend.

versitygw (Apache-2.0) is built from its Go module with the machine's Go into
``cache/versitygw-<version>/`` once, pinned in ``versions.toml`` ``[go]``; a folder is used only once a
``.complete`` marker says the build finished. It serves this stack's ``data/object_store/buckets``
folder (one directory per bucket, objects as files, metadata in extended attributes). Its root
credentials are generated once into ``.shopflow/secrets.env`` like the PostgreSQL password and reach
the gateway through its environment, never its command line. The project's bucket is created by
``after_ready``, so a fresh stack needs no hand set-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from shopflow.deploy.fetch import VERSIONS
from shopflow.deploy.go_build import build_go_module, built
from shopflow.deploy.servers import Server, port_open
from shopflow.files import credentials, ensure_bucket, s3_client
from shopflow.settings import Settings

if TYPE_CHECKING:
    from shopflow.deploy.health import Problem

MODULE = "github.com/versity/versitygw/cmd/versitygw"
HEALTH_PATH = "/health"


def versitygw_version() -> str:
    return VERSIONS["go"]["versitygw"]


def binary_dir(settings: Settings) -> Path:
    return settings.cache_dir / f"versitygw-{versitygw_version()}"


class ObjectStore(Server):
    """versitygw serving this stack's buckets folder over S3 (SigV4, path-style) on ``object_store_port``."""

    @property
    def port(self) -> int:
        return self.settings.object_store_port

    @property
    def version(self) -> str:
        return "versitygw " + versitygw_version()

    @property
    def binary(self) -> Path:
        return binary_dir(self.settings) / "versitygw"

    @property
    def buckets_dir(self) -> Path:
        return self.data_dir / "buckets"

    def fetched(self) -> bool:
        return built(binary_dir(self.settings))

    def fetch(self) -> None:
        build_go_module(MODULE, versitygw_version(), "versitygw", binary_dir(self.settings))

    def prepare(self) -> None:
        self.buckets_dir.mkdir(parents=True, exist_ok=True)
        access, secret = credentials(self.settings)
        # The gateway reads its root user from its environment: the secret stays out of `ps`.
        self.env = {"ROOT_ACCESS_KEY": access, "ROOT_SECRET_KEY": secret}

    def command(self) -> list[str]:
        s = self.settings
        return [str(self.binary), "--port", f"{s.host}:{s.object_store_port}", "--health", HEALTH_PATH,
                "--region", s.object_store_region, "--quiet", "posix", str(self.buckets_dir)]

    def ready(self) -> bool:
        # The gateway answering is this stack's: it accepts this stack's generated credentials (another
        # checkout's gateway has its own and answers 403).
        if not port_open(self.settings.host, self.port):
            return False
        try:
            if httpx.get(self.settings.object_store_url + HEALTH_PATH, timeout=2).status_code != 200:
                return False
            s3_client(self.settings, timeout_s=2).list_buckets()
        except (httpx.HTTPError, BotoCoreError, ClientError):
            return False
        return True

    def after_ready(self) -> None:
        ensure_bucket(self.settings)


def object_store_problems(settings: Settings) -> list[Problem]:
    """The project's bucket is missing (a data folder wiped by hand): ``stack up`` creates it again."""
    from shopflow.deploy.health import Problem  # health imports this module

    try:
        s3_client(settings, timeout_s=5).head_bucket(Bucket=settings.object_store_bucket)
    except ClientError:
        return [Problem("object_store", f"bucket {settings.object_store_bucket} is missing",
                        "`shopflow stack up` creates it (the images it held are gone: upload them again)")]
    return []
