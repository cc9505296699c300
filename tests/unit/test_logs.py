"""Log lines: one JSON object per event, run context bound, secrets never rendered."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from sync_daemon import logs


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    yield
    structlog.contextvars.clear_contextvars()
    logs.configure(format="json", level="debug")


def test_json_lines_carry_timestamp_level_event_and_run_context() -> None:
    stream = io.StringIO()
    logs.configure(format="json", level="info", stream=stream)
    logs.bind_run(run_id="r-1", vendor="proofpoint")
    logs.get_logger().info("sync.started", customers=3)
    logs.get_logger().debug("http.request")  # below the level: dropped
    logs.unbind_run("run_id", "vendor")
    logs.get_logger().warning("sync.outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["event"] == "sync.started"
    assert first["level"] == "info"
    assert first["run_id"] == "r-1"
    assert first["vendor"] == "proofpoint"
    assert first["customers"] == 3
    assert first["timestamp"].endswith("Z")
    assert "run_id" not in second


def test_known_secrets_are_scrubbed_from_every_value() -> None:
    stream = io.StringIO()
    logs.configure(format="json", level="info", secrets=["T-secret-1", ""], stream=stream)
    logs.get_logger().error("http.failed", detail="token T-secret-1 refused",
                            nested={"headers": ["Bearer T-secret-1"]})
    text = stream.getvalue()
    assert "T-secret-1" not in text
    line = json.loads(text)
    assert line["detail"] == "token *** refused"
    assert line["nested"] == {"headers": ["Bearer ***"]}


def test_console_format_is_human_readable() -> None:
    stream = io.StringIO()
    logs.configure(format="console", level="info", stream=stream)
    logs.get_logger().info("sync.finished", changes=2)
    text = stream.getvalue()
    assert "sync.finished" in text
    assert "changes=2" in text
    assert not text.startswith("{")


def test_loggers_created_at_import_time_follow_the_later_configuration() -> None:
    early = logs.get_logger()
    stream = io.StringIO()
    logs.configure(format="json", level="info", stream=stream)
    early.info("late.event")
    line = json.loads(stream.getvalue())
    assert line["event"] == "late.event"


def test_redact_blanks_the_configured_secrets_in_text_printed_outside_the_logs() -> None:
    logs.configure(secrets=["tok-123456", "pw-abcdef"], stream=io.StringIO())
    assert logs.redact("GET /me?t=tok-123456 as pw-abcdef") == "GET /me?t=*** as ***"
