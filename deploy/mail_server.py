"""The stack's SMTP server for notifications: mailpit, which keeps every message and serves it back.

mailpit (MIT) is built from its Go module with the machine's Go into ``cache/mailpit-<version>/``
once, pinned in ``versions.toml`` ``[go]``. It accepts mail on ``mail_smtp_port`` (no relay: nothing
leaves the machine) and serves the messages over its HTTP API on ``mail_api_port`` (``/api/v1/messages``,
``/api/v1/message/{ID}``), which the tests and the demo read. The API is behind basic auth with a
password generated once into ``.shopflow/secrets.env``; it reaches mailpit through its environment, never
its command line, and readiness checks that this password is accepted: another checkout's mailpit on
the same port answers 401 and is never taken for this stack's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from shopflow.deploy.fetch import VERSIONS
from shopflow.deploy.go_build import build_go_module, built
from shopflow.deploy.servers import Server, port_open
from shopflow.settings import Settings, ensure_local_secret

MODULE = "github.com/axllent/mailpit"
API_USER = "shopflow"
# mailpit deletes the oldest messages beyond this: enough for a benchmark run, bounded on disk.
MAX_MESSAGES = 20_000


def mailpit_version() -> str:
    return VERSIONS["go"]["mailpit"]


def binary_dir(settings: Settings) -> Path:
    return settings.cache_dir / f"mailpit-{mailpit_version()}"


@dataclass(frozen=True, slots=True)
class MailApi:
    """Where and how to read this stack's mailbox."""

    url: str
    auth: tuple[str, str]


def mail_api(settings: Settings) -> MailApi:
    password = ensure_local_secret(settings.home, "SHOPFLOW_MAIL_API_PASSWORD", 18).get_secret_value()
    return MailApi(url=f"http://{settings.host}:{settings.mail_api_port}", auth=(API_USER, password))


class MailServer(Server):
    """mailpit: SMTP on ``mail_smtp_port``, its HTTP API on ``mail_api_port``, messages in a SQLite file."""

    @property
    def port(self) -> int:
        return self.settings.mail_smtp_port

    @property
    def version(self) -> str:
        return "mailpit " + mailpit_version()

    @property
    def binary(self) -> Path:
        return binary_dir(self.settings) / "mailpit"

    def fetched(self) -> bool:
        return built(binary_dir(self.settings))

    def fetch(self) -> None:
        # Its release builds stamp the version in; so does this one, so readiness can check it.
        build_go_module(MODULE, mailpit_version(), "mailpit", binary_dir(self.settings),
                        ldflags=f"-X {MODULE}/config.Version={mailpit_version()}")

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        api = mail_api(self.settings)
        # The API's credentials go through the environment: the password stays out of `ps`.
        self.env = {"MP_UI_AUTH": f"{api.auth[0]}:{api.auth[1]}"}

    def command(self) -> list[str]:
        s = self.settings
        return [str(self.binary), "--smtp", f"{s.host}:{s.mail_smtp_port}", "--listen", f"{s.host}:{s.mail_api_port}",
                "--database", str(self.data_dir / "mailpit.db"), "--max", str(MAX_MESSAGES),
                # A local sink: no reverse DNS per connection, no calls home; no SMTP login (local only).
                "--smtp-disable-rdns", "--disable-version-check", "--quiet"]

    def ready(self) -> bool:
        s = self.settings
        if not (port_open(s.host, s.mail_smtp_port) and port_open(s.host, s.mail_api_port)):
            return False
        api = mail_api(s)
        try:
            answer = httpx.get(api.url + "/api/v1/info", auth=api.auth, timeout=2)
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and answer.json().get("Version") == mailpit_version()


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message as mailpit holds it: what the recipient would read."""

    mail_id: str
    message_id: str
    sender: str
    to: list[str]
    subject: str
    text: str
    html: str


class Mailbox:
    """Reads this stack's mailpit through its HTTP API (tests, the demo, the benchmark)."""

    def __init__(self, settings: Settings, timeout_s: float = 5.0) -> None:
        api = mail_api(settings)
        self._client = httpx.Client(base_url=api.url, auth=api.auth, timeout=timeout_s)

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def ids_to(self, address: str) -> list[str]:
        """The ids of the messages sent to ``address``, newest first."""
        answer = self._client.get("/api/v1/search", params={"query": f'to:"{address}"', "limit": 1000})
        answer.raise_for_status()
        return [m["ID"] for m in answer.json()["messages"]]

    def read(self, mail_id: str) -> ReceivedMail:
        answer = self._client.get(f"/api/v1/message/{mail_id}")
        answer.raise_for_status()
        m = answer.json()
        return ReceivedMail(mail_id=m["ID"], message_id=m["MessageID"], sender=m["From"]["Address"],
                            to=[t["Address"] for t in m["To"]], subject=m["Subject"], text=m["Text"],
                            html=m["HTML"])

    def to(self, address: str) -> list[ReceivedMail]:
        """Every message sent to ``address``, newest first."""
        return [self.read(mail_id) for mail_id in self.ids_to(address)]

    def count(self) -> int:
        answer = self._client.get("/api/v1/messages", params={"limit": 1})
        answer.raise_for_status()
        return int(answer.json()["total"])
