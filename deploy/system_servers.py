"""The stack's servers that come from Debian's packages: PostgreSQL, Redis and Prometheus.

Installed by ``make setup`` (deploy/install-system.sh) rather than fetched; each runs as a
project-local process on its own data dir, like the Java servers in ``servers.py``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path

import httpx

from shopflow.deploy import StackError
from shopflow.deploy.fetch import VERSIONS
from shopflow.deploy.servers import REGISTRY_DB, Server, port_open

RULES_FILE = Path(__file__).resolve().parent / "prometheus" / "rules.yml"


class Postgres(Server):
    """PostgreSQL from Debian's package, in a project-local data dir, ``wal_level=logical`` for Debezium."""

    @property
    def port(self) -> int:
        return self.settings.postgres_port

    @property
    def version(self) -> str:
        out = subprocess.run([str(self._bin / "postgres"), "--version"], capture_output=True, text=True).stdout
        # "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        return out.split()[2] if out else VERSIONS["debian"]["postgresql"]

    @property
    def _bin(self) -> Path:
        return Path(f"/usr/lib/postgresql/{VERSIONS['debian']['postgresql']}/bin")

    @property
    def _socket_dir(self) -> Path:
        return self.data_dir / "socket"

    @property
    def _pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def data_dir(self) -> Path:
        # PostgreSQL refuses to run as root; as root it runs as the `postgres` user, who must be
        # able to reach its data dir. A project checked out under a private home cannot give that,
        # so the data then lives under /var/tmp, keyed by the project's home.
        wanted = self.settings.data_dir / self.name
        if os.geteuid() != 0 or _world_traversable(wanted.parent):
            return wanted
        import hashlib

        key = hashlib.sha1(str(self.settings.home).encode()).hexdigest()[:10]
        return Path("/var/tmp/shopflow") / key / self.name

    def _as_owner(self, cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def fetch(self) -> None:
        if not (self._bin / "postgres").exists():
            raise StackError(
                f"PostgreSQL {VERSIONS['debian']['postgresql']} is not installed: run `make setup` "
                f"(apt-get install postgresql-{VERSIONS['debian']['postgresql']}) and retry"
            )

    def prepare(self) -> None:
        for d in (self.data_dir, self._socket_dir):
            d.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for d in (self.data_dir, self._socket_dir):
                os.chown(d, owner.pw_uid, owner.pw_gid)
        os.chmod(self._socket_dir, 0o700)
        if not (self._pgdata / "PG_VERSION").exists():
            shutil.rmtree(self._pgdata, ignore_errors=True)
            # Local (socket) connections are trusted: the socket dir is 0700, reachable only by its
            # owner; TCP connections need a password (scram-sha-256).
            proc = subprocess.run(
                self._as_owner([str(self._bin / "initdb"), "-D", str(self._pgdata), "-U", "postgres",
                                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"]),
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise StackError(f"initdb failed: {proc.stderr.strip().splitlines()[-1:]}; "
                                 f"remove {self._pgdata} and retry")

    def command(self) -> list[str]:
        s = self.settings
        return self._as_owner([
            str(self._bin / "postgres"), "-D", str(self._pgdata), "-p", str(s.postgres_port),
            "-c", f"listen_addresses={s.host}",
            "-c", f"unix_socket_directories={self._socket_dir}",
            # Shown in `ps` and by SHOW cluster_name: which stack a postgres process belongs to.
            "-c", f"cluster_name={s.stack_name}",
            "-c", "wal_level=logical",
            "-c", "max_wal_senders=10",
            "-c", "max_replication_slots=10",
            "-c", "shared_buffers=64MB",
            "-c", "log_min_messages=warning",
        ])

    def ready(self) -> bool:
        # psql goes through this stack's private socket dir: a server answering is this stack's.
        return port_open(self.settings.host, self.port) and self._psql("SELECT 1").returncode == 0

    def _psql(self, script: str, variables: dict[str, str] | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a psql script as the superuser over the private socket (local connections are trusted)."""
        args = [str(self._bin / "psql"), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", str(self._socket_dir),
                "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        for name, value in (variables or {}).items():
            args += ["-v", f"{name}={value}"]
        return subprocess.run(self._as_owner(args), input=script, capture_output=True, text=True,
                              env={**os.environ, **(env or {})})

    def after_ready(self) -> None:
        s = self.settings
        password = s.postgres_password.get_secret_value() if s.postgres_password else ""
        # psql variables quote the identifiers and the password (:"name", :'value'), so nothing
        # from settings is spliced into SQL text.
        script = (
            "\\getenv password SHOPFLOW_ROLE_PASSWORD\n"
            "SELECT format('CREATE ROLE %I LOGIN REPLICATION', :'role') "
            "WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \\gexec\n"
            "ALTER ROLE :\"role\" WITH LOGIN REPLICATION PASSWORD :'password';\n"
            + "".join(
                f"SELECT format('CREATE DATABASE %I OWNER %I', :'{var}', :'role') "
                f"WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'{var}') \\gexec\n"
                for var in ("app_db", "registry_db")
            )
        )
        proc = self._psql(
            script,
            variables={"role": s.postgres_user, "app_db": s.postgres_db, "registry_db": REGISTRY_DB},
            # The password reaches psql through its environment, not its (world-readable) argv.
            env={"SHOPFLOW_ROLE_PASSWORD": password},
        )
        if proc.returncode != 0:
            raise StackError(f"could not create the PostgreSQL role and databases: {proc.stderr.strip()}")


def _world_traversable(path: Path) -> bool:
    path = path.resolve()
    return all(not part.exists() or part.stat().st_mode & 0o001 for part in [path, *path.parents])


class Redis(Server):
    @property
    def port(self) -> int:
        return self.settings.redis_port

    @property
    def version(self) -> str:
        exe = shutil.which("redis-server")
        out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout if exe else ""
        for word in out.split():
            if word.startswith("v="):
                return word[2:]
        return "?"

    def fetch(self) -> None:
        if shutil.which("redis-server") is None:
            raise StackError("redis-server is not installed: run `make setup` (apt-get install redis-server) and retry")

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        s = self.settings
        return ["redis-server", "--bind", s.host, "--port", str(s.redis_port), "--dir", str(self.data_dir),
                "--save", "300 1", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]

    def ready(self) -> bool:
        import redis

        try:
            # The server answering is this stack's: it keeps its data in this stack's folder.
            answer = redis.Redis(host=self.settings.host, port=self.port, socket_timeout=1).config_get("dir")
        except redis.RedisError:
            return False
        return Path(answer.get("dir") or "") == self.data_dir.resolve()


class Prometheus(Server):
    """Prometheus from Debian's package, scraping every ShopFlow process that runs.

    No hand-kept list of ports: each process registers itself as a file_sd target in
    ``<home>/run/targets/<job>-<pid>.json`` (shopflow/metrics.py), which Prometheus watches. The
    configuration is written from settings on every start; the rules are ``deploy/prometheus/rules.yml``.
    """

    @property
    def port(self) -> int:
        return self.settings.prometheus_port

    @property
    def version(self) -> str:
        out = subprocess.run(["prometheus", "--version"], capture_output=True, text=True)
        # "prometheus, version 2.42.0+ds (branch: ..."
        words = (out.stdout or out.stderr).split()
        return words[2] if len(words) > 2 else "?"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "prometheus.yml"

    def fetch(self) -> None:
        if shutil.which("prometheus") is None:
            raise StackError("prometheus is not installed: run `make setup` (apt-get install prometheus) and retry")

    def config(self) -> dict:
        s = self.settings
        interval = f"{s.prometheus_scrape_interval_s:g}s"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "external_labels": {"stack": s.stack_name}},
            "rule_files": [str(RULES_FILE)],
            "scrape_configs": [
                {"job_name": "prometheus", "static_configs": [{"targets": [f"{s.host}:{s.prometheus_port}"]}]},
                # Each file names its process's job (worker, edge, monitor, ...) in its labels.
                {"job_name": "shopflow", "file_sd_configs": [
                    {"files": [str(s.targets_dir / "*.json")], "refresh_interval": interval}]},
            ],
        }

    def prepare(self) -> None:
        import yaml

        (self.data_dir / "tsdb").mkdir(parents=True, exist_ok=True)
        self.settings.targets_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            "# Written by `shopflow stack up` (deploy/system_servers.py) on every start: edit settings, not this.\n"
            + yaml.safe_dump(self.config(), sort_keys=False))

    def command(self) -> list[str]:
        s = self.settings
        return ["prometheus", f"--config.file={self.config_path}", f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
                f"--storage.tsdb.retention.time={s.prometheus_retention}",
                f"--web.listen-address={s.host}:{s.prometheus_port}", "--web.enable-lifecycle",
                "--log.level=warn"]

    def ready(self) -> bool:
        try:
            # The server answering runs this stack's configuration (its external label names the stack).
            answer = httpx.get(f"{self.settings.prometheus_url}/api/v1/status/config", timeout=2)
            return answer.status_code == 200 and self.settings.stack_name in answer.json()["data"]["yaml"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False
