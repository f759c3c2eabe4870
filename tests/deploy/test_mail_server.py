"""The stack's mail server (mailpit): built and pinned, its API password kept out of its command line,
mail sent over SMTP read back through its HTTP API, and never mistaken for another checkout's mailpit."""

from __future__ import annotations

import os
import smtplib
import socket
import subprocess
import uuid
from email.message import EmailMessage

import pytest
from polling import eventually

from shopflow.deploy import StackError
from shopflow.deploy.fetch import VERSIONS
from shopflow.deploy.mail_server import Mailbox, MailServer, binary_dir, mail_api
from shopflow.deploy.stack import Stack, all_servers
from shopflow.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mail_server(settings: Settings) -> MailServer:
    [server] = [s for s in all_servers(settings) if isinstance(s, MailServer)]
    return server


def _settings_of(home, **values) -> Settings:
    """Another checkout's settings: its own home, and not this checkout's secrets file."""
    return Settings(_env_file=None, home=home, postgres_password="unused", **values)  # type: ignore[call-arg]


def test_mailpit_is_pinned_and_its_api_password_stays_out_of_its_command_line(tmp_path):
    settings = _settings_of(tmp_path / "home", mail_smtp_port=2525, mail_api_port=8125)
    server = _mail_server(settings)

    server.prepare()

    assert server.version == f"mailpit {VERSIONS['go']['mailpit']}"
    user, password = mail_api(settings).auth
    assert server.env == {"MP_UI_AUTH": f"{user}:{password}"}
    command = " ".join(server.command())
    assert password not in command
    assert f"{settings.host}:2525" in command and f"{settings.host}:8125" in command
    # Generated once into the home's secrets file: a second read gives the same password.
    assert mail_api(_settings_of(settings.home)).auth == (user, password)


def test_a_failed_build_leaves_nothing_half_built_and_says_what_to_do(tmp_path, monkeypatch):
    server = _mail_server(_settings_of(tmp_path / "home"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: subprocess.CompletedProcess(
        a, 1, "", "go: github.com/axllent/mailpit@v1.33.1: connection refused"))

    with pytest.raises(StackError, match="could not build mailpit .*connection refused.*stack fetch"):
        server.fetch()

    assert not server.fetched()
    assert not binary_dir(server.settings).with_name(binary_dir(server.settings).name + ".partial").exists()


@pytest.mark.integration
def test_the_stack_runs_mailpit_and_mail_sent_over_smtp_is_read_back(stack):
    status = {s.name: s for s in Stack(stack, progress=lambda _: None).status()}["mail"]
    assert status.up and status.rss_mb > 0, status
    print(f"\nmail server {status.version}: pid {status.pid}, {status.rss_mb} MB (PSS)")

    # Given a message sent over SMTP to a fresh address
    to = f"probe-{uuid.uuid4().hex[:8]}@example.com"
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "probe@shopflow.local", to, "probe"
    mail.set_content("plain body")
    mail.add_alternative("<p>html body</p>", subtype="html")
    with smtplib.SMTP(stack.host, stack.mail_smtp_port, timeout=10) as smtp:
        smtp.send_message(mail)

    # Then the API holds it, both parts
    with Mailbox(stack) as mailbox:
        [received] = eventually(lambda: mailbox.to(to), timeout_s=10)
    assert (received.subject, received.to) == ("probe", [to])
    assert received.text.strip() == "plain body" and "<p>html body</p>" in received.html


@pytest.mark.integration
def test_another_checkouts_mailpit_is_not_taken_for_this_stacks(stack, tmp_path):
    # Given another checkout's mailpit (its own home, password and ports) from the same build
    other = _settings_of(tmp_path / "other", mail_smtp_port=_free_port(), mail_api_port=_free_port())
    other.home.mkdir()
    (other.home / "cache").symlink_to(stack.cache_dir.resolve(), target_is_directory=True)
    theirs = _mail_server(other)
    theirs.prepare()
    proc = subprocess.Popen(theirs.command(), env={**os.environ, **theirs.env}, cwd=theirs.data_dir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert eventually(theirs.ready, timeout_s=30)
        # When this stack's probe is pointed at its ports, Then it is not this stack's server
        mine_there = _mail_server(stack.model_copy(update={"mail_smtp_port": other.mail_smtp_port,
                                                           "mail_api_port": other.mail_api_port}))
        assert not mine_there.ready()
    finally:
        proc.terminate()
        proc.wait(10)
