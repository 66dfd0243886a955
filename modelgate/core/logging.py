"""Logging set-up, one configuration for every modelgate process (gateway, worker, CLI, demo).

``MODELGATE_LOG_FORMAT`` chooses the line format of every logger of the process, the ASGI
server's (uvicorn, granian), Litestar's, gRPC's and modelgate's alike:
- ``text`` (default): ``2026-12-04T18:25:25.123Z INFO modelgate.access: request
  request_id=... status=200``, a record's structured fields appended as ``key=value``;
- ``json``: one JSON object per line, ``{"ts": "2026-12-04T18:25:25.123Z", "level":
  "INFO", "logger": "modelgate.access", "msg": "request", ...}``, each structured field
  (``extra=``) a top-level key and an exception's traceback in ``exc`` on the same line.

``MODELGATE_LOG_LEVEL`` is the level of every logger but the access logs
(``modelgate.access``, ``modelgate.worker.access``), which are on or off by their own
setting; a component's own level (``MODELGATE_GATEWAY_LOG_LEVEL``,
``MODELGATE_WORKER_LOG_LEVEL``) wins where it is set.

Everything goes to stderr. gRPC's C core logs there itself, outside Python's logging:
``GRPC_VERBOSITY`` defaults to ``ERROR`` here (a value set in the environment wins), so
that what it would print is only an error worth a look.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal

import msgspec
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "ACCESS_LOGGERS",
    "JsonFormatter",
    "LogSettings",
    "StderrHandler",
    "TextFormatter",
    "configure_logging",
    "logging_config",
]

LogFormat = Literal["json", "text"]
LogLevel = Literal["debug", "info", "warning", "error"]

#: The per-request loggers, switched on and off by ``access_log`` alone.
ACCESS_LOGGERS = ("modelgate.access", "modelgate.worker.access")

#: The attributes every `logging.LogRecord` has; the others are a record's fields.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    # NOTE: uvicorn adds a coloured copy of some messages; the plain one is ``msg``.
    "color_message",
    "field_names",
}
_encode = msgspec.json.Encoder(enc_hook=str).encode
#: Lines given as values: ``(created, values)`` each (`StderrHandler.emit_entries`).
Entries = Sequence[tuple[float, tuple[Any, ...]]]


class LogSettings(BaseSettings):
    """``MODELGATE_LOG_FORMAT`` and ``MODELGATE_LOG_LEVEL``, shared by every process."""

    model_config = SettingsConfigDict(env_prefix="MODELGATE_LOG_", extra="ignore")

    format: LogFormat = "text"
    #: Unset: each process's default (info for servers, warning for the CLI's commands).
    level: LogLevel | None = None


class _Clock:
    """ISO 8601 UTC timestamps with milliseconds; the seconds part is formatted once a second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """A record's structured fields: what ``extra=`` added to it (or its ``field_names``,
    `modelgate.core.accesslog.AccessRecord`)."""
    names = getattr(record, "field_names", None)
    if names is not None:
        return {k: record.__dict__[k] for k in names}
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``msg``, the record's
    fields, and ``exc`` (the traceback) when it carries an exception."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()
        self._lines: dict[tuple[str, ...], type[msgspec.Struct]] = {}

    def format(self, record: logging.LogRecord) -> str:
        names = getattr(record, "field_names", None)
        if names is not None and not record.exc_info:
            return self._line(record, names)
        doc: dict[str, Any] = {
            "ts": self._clock.iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if names is not None:
            attrs = record.__dict__
            for key in names:
                doc[key] = attrs[key]
        else:
            for key, value in record.__dict__.items():
                if key not in _STANDARD:
                    doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return _encode(doc).decode()

    def _struct(self, names: tuple[str, ...]) -> type[msgspec.Struct]:
        # NOTE: lines with fixed field names (access lines) are encoded from a struct made
        # once per set of names, at a third of the cost of building and encoding a dict.
        line = self._lines.get(names)
        if line is None:
            fields = [(n, Any) for n in ("ts", "level", "logger", "msg", *names)]
            line = self._lines[names] = msgspec.defstruct("Line", fields)
        return line

    def _line(self, record: logging.LogRecord, names: tuple[str, ...]) -> str:
        attrs = record.__dict__
        made = self._struct(names)(
            self._clock.iso(record.created),
            record.levelname,
            record.name,
            record.getMessage(),
            *[attrs[n] for n in names],
        )
        return _encode(made).decode()

    def format_entries(
        self, logger: str, msg: str, names: tuple[str, ...], entries: Entries
    ) -> str:
        """INFO lines of ``logger`` without records: ``(created, values)`` per line, the
        values of ``names`` (`modelgate.core.accesslog`); one string, each line ended."""
        line, iso = self._struct(names), self._clock.iso
        made = b"\n".join([_encode(line(iso(c), "INFO", logger, msg, *v)) for c, v in entries])
        return made.decode() + "\n"


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if not text or " " in text or '"' in text or "=" in text or "\n" in text:
        return _encode(text).decode()
    return text


class TextFormatter(logging.Formatter):
    """``TS LEVEL logger: message key=value ...`` (fields that are None left out) and the
    traceback on the lines after."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _Clock()

    def format_entries(
        self, logger: str, msg: str, names: tuple[str, ...], entries: Entries
    ) -> str:
        """As `JsonFormatter.format_entries`, in this format."""
        iso, lines = self._clock.iso, []
        for created, values in entries:
            extra = " ".join(
                [
                    f"{k}={_text_value(v)}"
                    for k, v in zip(names, values, strict=True)
                    if v is not None
                ]
            )
            lines.append(f"{iso(created)} INFO {logger}: {msg} {extra}\n")
        return "".join(lines)

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self._clock.iso(record.created)} {record.levelname} {record.name}: "
        line += record.getMessage()
        extra = [f"{k}={_text_value(v)}" for k, v in fields_of(record).items() if v is not None]
        if extra:
            line += " " + " ".join(extra)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The process's current ``sys.stderr`` (as `logging.lastResort` writes to it, so a
    replaced stderr is followed), one write per record; `emit_entries` writes a batch of
    lines in one write (`modelgate.core.accesslog` hands its lines over that way)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass

    def emit_entries(self, logger: str, msg: str, names: tuple[str, ...], entries: Entries) -> bool:
        """Write INFO lines given as values (`JsonFormatter.format_entries`) in one write,
        without a record per line; False when this handler cannot (it has filters, or its
        formatter is not one of these), and the caller hands it records instead."""
        format_entries = getattr(self.formatter, "format_entries", None)
        if self.filters or format_entries is None or self.level > logging.INFO:
            return False
        text = format_entries(logger, msg, names, entries)
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write(text)
                self.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"name": logger, "msg": msg}))
        return True


def logging_config(level: str, fmt: LogFormat, *, access_log: bool = True) -> dict[str, Any]:
    """The `logging.config.dictConfig` of a modelgate process (also what granian is given,
    so that its own loggers are configured the same way in each of its processes)."""
    upper = level.upper()
    formatter = (
        "modelgate.core.logging.JsonFormatter"
        if fmt == "json"
        else ("modelgate.core.logging.TextFormatter")
    )
    # NOTE: the servers' and frameworks' loggers keep no handler of their own and
    # propagate to the root's one handler, so every line has the same format.
    through_root = {"handlers": [], "propagate": True}
    access = {**through_root, "level": "INFO" if access_log else "CRITICAL"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"modelgate": {"()": formatter}},
        "handlers": {
            "stderr": {"()": "modelgate.core.logging.StderrHandler", "formatter": "modelgate"}
        },
        "root": {"level": upper, "handlers": ["stderr"]},
        "loggers": {
            **{name: {**through_root, "level": upper} for name in ("uvicorn", "uvicorn.error")},
            "uvicorn.access": {**through_root, "level": upper},
            "litestar": {**through_root, "level": upper},
            "_granian": {**through_root, "level": upper},
            "granian.access": {**through_root, "level": upper},
            # one line per probe and admin call otherwise
            "httpx": {**through_root, "level": "WARNING"},
            "httpcore": {**through_root, "level": "WARNING"},
            **{name: access for name in ACCESS_LOGGERS},
        },
    }


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("modelgate").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("modelgate").critical(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def configure_logging(
    level: str | None = None,
    *,
    default_level: LogLevel = "info",
    access_log: bool = True,
    settings: LogSettings | None = None,
) -> LogSettings:
    """Configure this process's logging (idempotent: a later call replaces an earlier
    one). The level is ``level`` (a component's own setting) when given, else
    ``MODELGATE_LOG_LEVEL``, else ``default_level``; ``access_log`` False silences the
    access loggers. Returns the settings it applied."""
    settings = settings or LogSettings()
    chosen = level or settings.level or default_level
    settings = settings.model_copy(update={"level": chosen.lower()})
    assert settings.level is not None
    # NOTE: the C core reads it when it starts (the first channel or server), so setting it
    # here, before either, is in time; the only environment this module writes.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    # NOTE: the documented optimisations of the logging HOWTO: no record looks up its
    # caller's frame, thread or process (no format here prints them).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.config.dictConfig(
        logging_config(settings.level, settings.format, access_log=access_log)
    )
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    return settings
