"""Access logs written off the request path, and request ids.

An `AccessLog` line goes through its logger like any other: ``configure_logging`` gives it
the process's one format, and ``access_log`` turns the logger on or off. But the request
path only appends a tuple of values. A flusher thread hands them to the logger's handlers
every `AccessLog.interval_s`, and at exit: as values in one write where the handler takes
them (`modelgate.core.logging.StderrHandler.emit_entries`), else as records.

NOTE: measured by ``bench.access_log`` (docs/BENCHMARKS.md, 2026-12-04). A record made and
written on the event loop per request cost about 10 µs of CPU; this costs 1.5 µs on the
loop and 2.5 µs in the flusher. A `logging.handlers.QueueHandler` thread fed one record at
a time costs more than either (a thread hand-off per record).
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["AccessLog", "AccessRecord", "DroppedLines", "new_request_id", "request_id"]

#: The longest client-sent ``X-Request-Id`` kept (longer ones are replaced).
MAX_REQUEST_ID = 128


def new_request_id() -> str:
    """32 hex digits, random (not secret: an id to find a request's lines by)."""
    return f"{random.getrandbits(128):032x}"


def request_id(sent: str | None) -> str:
    """The request id of a request: the client's ``X-Request-Id`` when it is 1 to
    `MAX_REQUEST_ID` printable ASCII characters, else a new one (`new_request_id`)."""
    if sent and len(sent) <= MAX_REQUEST_ID and sent.isascii() and sent.isprintable():
        return sent
    return new_request_id()


class AccessRecord(logging.LogRecord):
    """A record of an `AccessLog`: ``field_names`` says which attributes are its fields
    (the formats then skip looking for them)."""

    field_names: tuple[str, ...] = ()


class AccessLog:
    """One INFO record per `write` on ``logger``, with ``fields`` as its structured fields
    (``values`` in the same order) and ``message`` as its message.

    `write` is cheap and thread-safe; records reach the handlers within ``interval_s``,
    in order, from a daemon thread started by the first write in each process (a forked
    child starts its own). `flush` writes what is pending now; it also runs at exit. At
    most ``capacity`` lines wait: beyond that a line is dropped and counted in `dropped`.
    """

    def __init__(
        self,
        logger: str,
        message: str,
        fields: Sequence[str],
        *,
        interval_s: float = 0.1,
        capacity: int = 100_000,
    ) -> None:
        self.logger = logging.getLogger(logger)
        self.message = message
        self.fields = tuple(fields)
        self.interval_s = interval_s
        self.capacity = capacity
        self.dropped = 0
        self._reported = 0
        self._pending: collections.deque[tuple[float, tuple[Any, ...]]] = collections.deque()
        self._started = False
        self._lock = threading.Lock()
        self._base = logging.LogRecord(logger, logging.INFO, "", 0, message, None, None).__dict__
        atexit.register(self.flush)
        os.register_at_fork(after_in_child=self._forked)

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    def write(self, values: tuple[Any, ...]) -> None:
        """Queue one line (``values`` in `fields` order) if the logger is on."""
        if not self.logger.isEnabledFor(logging.INFO):
            return
        if not self._started:
            self._start()
        pending = self._pending
        if len(pending) >= self.capacity:
            self.dropped += 1
            return
        pending.append((time.time(), values))

    def flush(self) -> None:
        """Hand every pending line to the logger's handlers now: as values, in one write,
        to a handler that takes them (`modelgate.core.logging.StderrHandler.emit_entries`),
        else as one record per line."""
        pending = self._pending
        if not pending:
            return
        with self._lock:  # one flusher at a time keeps the lines in order
            entries = []
            while pending:
                try:
                    entries.append(pending.popleft())
                except IndexError:
                    break
            records: list[logging.LogRecord] | None = None
            name, message, fields = self.logger.name, self.message, self.fields
            for handler in _handlers(self.logger):
                if handler.level > logging.INFO:
                    continue
                emit_entries = getattr(handler, "emit_entries", None)
                if emit_entries is not None and emit_entries(name, message, fields, entries):
                    continue
                if records is None:
                    records = [self._record(created, values) for created, values in entries]
                for record in records:
                    handler.handle(record)

    def _record(self, created: float, values: tuple[Any, ...]) -> AccessRecord:
        # NOTE: built as a dict, not through LogRecord.__init__ (a third of its cost): the
        # formats read only these attributes.
        record = AccessRecord.__new__(AccessRecord)
        record.__dict__.update(self._base)
        record.created = created
        record.msecs = (created - int(created)) * 1000
        record.__dict__.update(zip(self.fields, values, strict=True))
        record.field_names = self.fields
        return record

    def _forked(self) -> None:
        # NOTE: a forked child has the lines its parent will write, and no flusher thread.
        self._lock = threading.Lock()
        self._pending = collections.deque()
        self._started = False
        self.dropped = self._reported = 0

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            threading.Thread(
                target=self._run, name=f"{self.logger.name} flusher", daemon=True
            ).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            try:
                self.flush()
            except Exception:  # a broken handler must not end the flusher
                logging.getLogger("modelgate").exception("the access log could not be written")
            self._report_dropped()

    def _report_dropped(self) -> None:
        """One warning per flush that found lines dropped since the last one."""
        dropped = self.dropped
        if dropped != self._reported:
            logging.getLogger("modelgate").warning(
                "%s: %d lines dropped since the last warning (%d in all): more than %d lines "
                "waited, the log's writer falls behind (stderr blocked or slow)",
                self.logger.name, dropped - self._reported, dropped, self.capacity,
            )  # fmt: skip
            self._reported = dropped


class DroppedLines(Collector):
    """The Prometheus counter ``name`` (``_total``) of the lines ``log`` dropped."""

    def __init__(self, log: AccessLog, name: str) -> None:
        self.log, self.name = log, name

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            self.name,
            f"Lines of the {self.log.logger.name} log dropped because its writer fell behind",
            value=self.log.dropped,
        )


def _handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record of ``logger`` reaches (`logging.Logger.callHandlers`'s walk)."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found.extend(current.handlers)
        current = current.parent if current.propagate else None
    return found
