"""Notifications end to end: a real pass (`run_vendor`) sends its digest to a real SMTP server.

The server is a tiny SMTP receiver on 127.0.0.1 (EHLO, MAIL, RCPT, DATA, QUIT; no STARTTLS, so
`starttls = false`). Syncro is replaced by an offline stand-in with no products, and the vendor
reports one unusable customer: the pass ends `partial` with one error notice.
"""

from __future__ import annotations

import email
import email.policy
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
from structlog.testing import capture_logs

from sync_daemon.app import App
from sync_daemon.connectors.http import RequestStats
from sync_daemon.connectors.syncro import Product, SyncroClient
from sync_daemon.jobs import RunReport, run_vendor
from sync_daemon.notify import notify_run
from sync_daemon.plan import Notice, Plan
from sync_daemon.settings import Settings
from sync_daemon.vendor import Snapshot, SourceProblem, VendorSource

VENDOR = "proofpoint"
SMTP_PASSWORD = "smtp-S3cr3t"  # a fake secret that must never be mailed or logged
SYNCRO_TOKEN = "syncro-T0ken"


class SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to take one message per connection."""

    server: SmtpReceiver

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")

    def handle(self) -> None:
        self.reply("220 localhost test SMTP")
        while raw := self.rfile.readline():
            verb = raw.decode("ascii", "replace").strip().split(" ")[0].upper()
            if verb in {"EHLO", "HELO"}:
                self.reply("250-localhost")
                self.reply("250 8BITMIME")
            elif verb in {"MAIL", "RCPT", "RSET", "NOOP"}:
                if verb == "RCPT":
                    self.server.recipients.append(raw.decode("ascii").strip())
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while (line := self.rfile.readline()) not in {b".\r\n", b""}:
                    lines.append(line[1:] if line.startswith(b"..") else line)
                self.server.messages.append(b"".join(lines))
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 not implemented")


class SmtpReceiver(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SmtpHandler)
        self.messages: list[bytes] = []
        self.recipients: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def received(self) -> list[EmailMessage]:
        return [email.message_from_bytes(m, policy=email.policy.default) for m in self.messages]


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    server = SmtpReceiver()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=2)


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (it was bound a moment ago, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ProblemSource:
    """A vendor that reports one customer whose data cannot be used."""

    name: str = VENDOR

    def fetch(self) -> Snapshot:
        return Snapshot(VENDOR, (), (), (), problems=(SourceProblem(
            "package ultra has no price in [proofpoint.packages]", customer_id="42",
            customer="Acme Dental"),))

    def check(self) -> str:
        return "fake"

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class OfflineApi:
    """The part of Syncro's HTTP client a pass reads: its request counts."""

    stats: RequestStats = field(default_factory=RequestStats)


@dataclass
class OfflineSyncro:
    """Syncro with no products and nothing to read; counts nothing."""

    api: OfflineApi = field(default_factory=OfflineApi)
    concurrency: int = 1

    def list_products(self) -> list[Product]:
        return []

    def close(self) -> None:
        """Nothing to release."""


@dataclass
class OfflineApp(App):
    """The real App and state database; the vendor and Syncro are stand-ins."""

    fake_syncro: OfflineSyncro = field(default_factory=OfflineSyncro)

    @property
    def syncro(self) -> SyncroClient:
        return cast(SyncroClient, self.fake_syncro)

    def source(self, vendor: str) -> VendorSource:
        return ProblemSource()


def settings(tmp_path: Path, port: int, **notify: Any) -> Settings:
    return Settings(
        state={"url": f"sqlite:///{tmp_path / 'state.db'}"},
        syncro={"base_url": "https://acme.syncromsp.example/api/v1", "api_token": SYNCRO_TOKEN},
        notify={"email_to": ["ops@msp.example", "billing@msp.example"],
                "email_from": "sync@msp.example", "smtp_host": "127.0.0.1", "smtp_port": port,
                "starttls": False, **notify},
    )


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[[Settings], OfflineApp]]:
    made: list[OfflineApp] = []

    def make(config: Settings) -> OfflineApp:
        app = OfflineApp(settings=config, config_path=tmp_path / "sync-daemon.toml")
        made.append(app)
        return app

    yield make
    for app in made:
        app.close()


def test_a_pass_with_an_error_sends_one_digest(
    tmp_path: Path, smtp: SmtpReceiver, make_app: Callable[[Settings], OfflineApp]
) -> None:
    app = make_app(settings(tmp_path, smtp.port))
    with capture_logs() as logs:
        report = run_vendor(app, VENDOR, trigger="schedule", run_id="c" * 32)
    assert report.status == "partial"
    (message,) = smtp.received()
    assert message["Subject"] == "[sync-daemon] proofpoint partial: 1 error"
    assert message["From"] == "sync@msp.example"
    assert message["To"] == "ops@msp.example, billing@msp.example"
    assert len(smtp.recipients) == 2
    body = message.get_content()
    assert f"Run:     {'c' * 32}" in body
    assert "Vendor:  proofpoint" in body
    assert "Status:  partial" in body
    assert "errors 1" in body
    assert "Acme Dental: package ultra has no price in [proofpoint.packages] [vendor_data]" in body
    (sent,) = [e for e in logs if e["event"] == "notify.sent"]
    assert sent["run_id"] == "c" * 32
    assert not [e for e in logs if e["event"] == "notify.failed"]


def test_a_dry_run_and_an_empty_recipient_list_send_nothing(
    tmp_path: Path, smtp: SmtpReceiver, make_app: Callable[[Settings], OfflineApp]
) -> None:
    run_vendor(make_app(settings(tmp_path, smtp.port)), VENDOR, dry_run=True)
    run_vendor(make_app(settings(tmp_path, smtp.port, email_to=[])), VENDOR)
    run_vendor(make_app(settings(tmp_path, smtp.port, on=["warning"])), VENDOR)
    assert smtp.messages == []


def test_an_unreachable_mail_server_is_logged_and_the_pass_goes_on(
    tmp_path: Path, make_app: Callable[[Settings], OfflineApp]
) -> None:
    app = make_app(settings(tmp_path, closed_port(), smtp_user="sync",
                            smtp_password=SMTP_PASSWORD))
    with capture_logs() as logs:
        report = run_vendor(app, VENDOR)
    assert report.status == "partial"
    (failed,) = [e for e in logs if e["event"] == "notify.failed"]
    assert failed["log_level"] == "error"
    assert failed["run_id"] == report.run_id
    assert failed["kind"] == "ConnectionRefusedError"
    assert SMTP_PASSWORD not in repr(logs)
    with app.store.transaction() as tx:
        (run,) = tx.list_runs(VENDOR, limit=1)
    assert run.status == "partial"


def test_no_secret_reaches_the_mail(tmp_path: Path, smtp: SmtpReceiver) -> None:
    config = settings(tmp_path, smtp.port, smtp_password=SMTP_PASSWORD)
    leaky = Notice("error", "vendor_data", f"rejected token {SYNCRO_TOKEN} / {SMTP_PASSWORD}")
    report = RunReport(run_id="d" * 32, vendor=VENDOR, dry_run=False, status="failed",
                       plan=Plan(VENDOR, (), (leaky,)), error=f"bad token {SYNCRO_TOKEN}")
    notify_run(config, report)
    (raw,) = smtp.messages
    assert SYNCRO_TOKEN.encode() not in raw
    assert SMTP_PASSWORD.encode() not in raw
    assert "rejected token *** / ***" in smtp.received()[0].get_content()
