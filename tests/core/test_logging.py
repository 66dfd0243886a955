"""The log formats, request ids and the off-loop access log (`modelgate.core.logging`,
`modelgate.core.accesslog`); the processes' own logs are checked end to end in
`tests.e2e.test_logs`."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from prometheus_client import CollectorRegistry

from modelgate.core.accesslog import AccessLog, DroppedLines, request_id
from modelgate.core.logging import JsonFormatter, TextFormatter, logging_config


def record(
    msg: str = "hello %s", args: tuple[object, ...] = ("you",), **extra: object
) -> logging.LogRecord:
    made = logging.LogRecord("modelgate.test", logging.WARNING, __file__, 1, msg, args, None)
    made.created = 1764872725.123456  # 2025-12-04T18:25:25.123Z
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_the_fields_and_the_records_structured_fields() -> None:
    line = JsonFormatter().format(record(request_id="r1", status=200, when=object()))
    doc = json.loads(line)
    assert {k: doc[k] for k in ("ts", "level", "logger", "msg", "request_id", "status")} == {
        "ts": "2025-12-04T18:25:25.123Z",
        "level": "WARNING",
        "logger": "modelgate.test",
        "msg": "hello you",
        "request_id": "r1",
        "status": 200,
    }
    assert doc["when"].startswith("<object")  # what JSON cannot hold is written as text


def test_an_exception_stays_on_its_line_in_json() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        failed = record("failed", (), exc_info=None)
        failed.exc_info = sys.exc_info()
    line = JsonFormatter().format(failed)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["msg"] == "failed"
    assert "ValueError: boom" in doc["exc"]
    assert "Traceback" in doc["exc"]


def test_a_text_line_has_a_timestamp_and_its_fields_as_key_value() -> None:
    line = TextFormatter().format(record(request_id="r 1", status=200))
    assert line == (
        '2025-12-04T18:25:25.123Z WARNING modelgate.test: hello you request_id="r 1" status=200'
    )


def test_the_servers_and_frameworks_loggers_write_through_the_one_root_handler() -> None:
    config = logging_config("warning", "json", access_log=False)
    assert config["root"] == {"level": "WARNING", "handlers": ["stderr"]}
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar", "_granian"):
        assert config["loggers"][name]["handlers"] == []
        assert config["loggers"][name]["propagate"] is True
    assert config["loggers"]["modelgate.access"]["level"] == "CRITICAL"
    assert logging_config("info", "json")["loggers"]["modelgate.access"]["level"] == "INFO"


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("abc-123", True), ("x" * 128, True), ("x" * 129, False), ("", False), (None, False),
     ("é", False), ("a\nb", False), ("tab\there", False)],
)  # fmt: skip
def test_a_request_id_is_kept_only_when_short_and_printable(sent: str | None, kept: bool) -> None:
    made = request_id(sent)
    if kept:
        assert made == sent
    else:
        assert len(made) == 32
        assert int(made, 16) >= 0


def test_the_access_log_writes_every_line_in_order_once_flushed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = AccessLog("modelgate.test.access", "request", ("request_id", "status"))
    log.write(("before", 200))  # the logger is off: nothing is queued
    caplog.set_level(logging.INFO, logger="modelgate.test.access")
    for n in range(50):
        log.write((f"r{n}", 200 + n))
    log.flush()
    lines = [(r.request_id, r.status, r.getMessage()) for r in caplog.records]  # type: ignore[attr-defined]
    assert lines == [(f"r{n}", 200 + n, "request") for n in range(50)]


def test_lines_past_the_capacity_are_dropped_counted_exported_and_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A writer that falls behind (stderr blocked) costs lines, never memory or the loop:
    each one dropped is counted, exported as a Prometheus counter, and warned about once."""
    log = AccessLog("modelgate.test.dropping", "request", ("n",), interval_s=3600, capacity=3)
    caplog.set_level(logging.INFO, logger="modelgate.test.dropping")
    for n in range(5):
        log.write((n,))
    registry = CollectorRegistry()
    registry.register(DroppedLines(log, "modelgate_test_access_log_dropped"))
    assert registry.get_sample_value("modelgate_test_access_log_dropped_total") == 2
    log._report_dropped()
    log._report_dropped()  # nothing new: no second warning
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warned == [
        "modelgate.test.dropping: 2 lines dropped since the last warning (2 in all): more than "
        "3 lines waited, the log's writer falls behind (stderr blocked or slow)"
    ]
    log.flush()
    assert [r.n for r in caplog.records if r.levelno == logging.INFO] == [0, 1, 2]  # type: ignore[attr-defined]
