"""E-mail notifications: one digest per pass that has something the operator asked to hear of.

`digest()` is a pure function of the run's report; `send()` speaks SMTP (stdlib `smtplib`);
`notify_run()` is the one hook `run_vendor` calls after every pass that is not a dry run. A
notification that cannot be sent is logged (`notify.failed`) and never fails the pass.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING

from sync_daemon.logs import REDACTED, get_logger
from sync_daemon.plan import Notice, describe

if TYPE_CHECKING:
    from sync_daemon.jobs import RunReport
    from sync_daemon.settings import NotifySettings, Settings

log = get_logger()

SMTP_TIMEOUT_S = 30.0
ERROR_STATUSES = frozenset({"failed", "partial", "stopped"})


@dataclass(frozen=True, slots=True)
class EmailContent:
    """One e-mail: a subject line and a plain-text body."""

    subject: str
    body: str


def digest(report: RunReport, on: set[str]) -> EmailContent | None:
    """The e-mail for a pass, listing everything in it that `on` asks for; None if nothing.

    `on` holds "error" (the pass failed, was partial or was stopped by the safety guard; a
    change failed; an error notice), "warning" (warning notices other than unmapped) and
    "unmapped" (customers the vendor reports that are not mapped). A plan stored for approval
    is always worth a digest: nothing reaches Syncro until someone acts on it.
    """
    errors = [n for n in report.notices if n.level == "error"] if "error" in on else []
    warnings = ([n for n in report.notices if n.level == "warning" and n.kind != "unmapped"]
                if "warning" in on else [])
    unmapped = [n for n in report.notices if n.kind == "unmapped"] if "unmapped" in on else []
    failed = _failed_changes(report) if "error" in on else []
    run_trouble = "error" in on and report.status in ERROR_STATUSES
    waiting = report.status == "pending" and report.plan is not None
    if not (errors or warnings or unmapped or failed or run_trouble or waiting):
        return None

    counts = report.counts()
    lines = [
        f"Run:     {report.run_id}",
        f"Vendor:  {report.vendor}",
        f"Status:  {report.status}",
        "Counts:  " + ", ".join(f"{key.replace('_', ' ')} {value}"
                                for key, value in counts.items()),
    ]
    if report.duration_s:
        lines.append(f"Took:    {report.duration_s:.1f} s")
    if "error" in on and report.error:
        lines += ["", f"The pass failed: {report.error}"]
    if "error" in on and report.guard:
        lines += ["", f"Stopped by the safety guard before applying anything: {report.guard}",
                  "(run `sync-daemon sync --force` to apply it anyway)"]
    if waiting:
        planned = report.counts()["changes_planned"]
        lines += ["", (f"A plan of {planned} change{'' if planned == 1 else 's'} is waiting "
                       "for approval; nothing was written to Syncro."),
                  f"  Review it:  sync-daemon plan show {report.run_id}",
                  f"  Apply it:   sync-daemon plan approve {report.run_id}",
                  f"  Discard it: sync-daemon plan reject {report.run_id}"]
    sections = (("Failed changes", failed), ("Errors", _notice_lines(errors)),
                ("Warnings", _notice_lines(warnings)),
                ("Not mapped", _notice_lines(unmapped)))
    for title, items in sections:
        if items:
            lines += ["", f"{title} ({len(items)}):", *(f"  - {item}" for item in items)]
    lines += ["", "-- ",
              "sync-daemon; `sync-daemon history` and the logs (run_id above) have the details."]

    parts = [f"{n} {word}{'' if n == 1 else 's'}" for n, word in (
        (counts["changes_failed"], "failed change"), (len(errors), "error"),
        (len(warnings), "warning"), (len(unmapped), "unmapped customer")) if n]
    subject = f"[sync-daemon] {report.vendor} " + (
        "plan waiting for approval" if waiting else report.status)
    if parts:
        subject += ": " + ", ".join(parts)
    return EmailContent(subject=subject, body="\n".join(lines) + "\n")


def send(settings: NotifySettings, content: EmailContent) -> None:
    """Send `content` to `settings.email_to`; raises `OSError`/`smtplib.SMTPException`."""
    message = EmailMessage()
    message["Subject"] = content.subject
    message["From"] = settings.email_from
    message["To"] = ", ".join(settings.email_to)
    message.set_content(content.body)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_S) as smtp:
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            password = settings.smtp_password
            smtp.login(settings.smtp_user,
                       password.get_secret_value() if password is not None else "")
        smtp.send_message(message)


def notify_run(settings: Settings, report: RunReport) -> None:
    """Send the pass's digest if notifications are on and it has anything; never raises."""
    cfg = settings.notify
    if cfg is None or not cfg.enabled or report.dry_run:
        return
    try:
        content = digest(report, set(cfg.on))
        if content is None:
            return
        secrets = settings.secrets()
        send(cfg, EmailContent(_scrub(content.subject, secrets), _scrub(content.body, secrets)))
    except Exception as exc:  # noqa: BLE001  a notification must never fail the pass
        log.error("notify.failed", run_id=report.run_id, vendor=report.vendor,
                  smtp_host=cfg.smtp_host, smtp_port=cfg.smtp_port,
                  kind=type(exc).__name__, error=_scrub(str(exc), settings.secrets()))
        return
    log.info("notify.sent", run_id=report.run_id, vendor=report.vendor,
             recipients=len(cfg.email_to), subject=content.subject)


def _failed_changes(report: RunReport) -> list[str]:
    rows = []
    for applied in report.applied:
        if applied.error is None:
            continue
        for row in describe(applied.change, target=applied.target):
            who = f"{row.customer}: " if row.customer else ""
            what = row.field or row.target
            rows.append(f"{who}{row.action} {what} ({row.reason}): {applied.error}")
    return rows


def _notice_lines(notices: Iterable[Notice]) -> list[str]:
    return [f"{n.customer + ': ' if n.customer else ''}{n.message} [{n.kind}]" for n in notices]


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text
