"""The rollout chapter of ``modelgate demo``: under steady client traffic, a good version is
rolled out step by step and promoted, then a faulty one (half of its answers fail, by the
``modelgate.fault.error_rate`` label of backends/faults.py) is rolled back by its error-rate
gate on its own, with the live view of ``modelgate rollout status --watch`` and what the
clients saw (the failed candidate attempts are retried on the baseline).
"""

from __future__ import annotations

import collections
import json
import threading
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from backends.synthetic import scale_model
from modelgate.cli.rollout import follow
from modelgate.cli.rollout_view import list_table

__all__ = ["FAULTY", "GOOD", "publish_candidates", "rollout_story"]

#: The candidates the chapter rolls out, with their ONNX scale and registry labels.
GOOD: tuple[str, float, dict[str, str]] = ("1.2.0", 2.0, {})
FAULTY: tuple[str, float, dict[str, str]] = ("1.3.0", 2.5, {"modelgate.fault.error_rate": "0.5"})
#: Short steps, so the story takes seconds: 10% → 50% → 100%, each judged after 3 s on at
#: least 40 candidate attempts; more than 1% errors, or a p99 over 10x the baseline's,
#: fails. (The latency gate is loose here: a p99 over a few dozen requests of a millisecond
#: model on a busy laptop is noise; the faulty candidate fails on its error rate.)
ROLLOUT = {
    "steps": [10, 50, 100],
    "interval_s": 3.0,
    "gates": {"max_error_rate": 0.01, "max_latency_ratio": 10.0, "min_requests": 40},
}
#: A rollout of the demo that has not ended by then means something is broken: stop.
ROLLOUT_TIMEOUT_S = 120.0
BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]}]}


def publish_candidates(client: httpx.Client, model: str) -> list[str]:
    """Publish the two candidates (quietly; the chapter introduces them); their refs."""
    refs = []
    for version, scale, labels in (GOOD, FAULTY):
        onnx = scale_model(scale)
        files = {"file": (f"{model}-{version}.onnx", onnx, "application/octet-stream")}
        data = {"version": version, "labels": json.dumps(labels)}
        client.post(f"/admin/v1/models/{model}/versions", data=data, files=files).raise_for_status()
        refs.append(f"{model}@{version}")
    return refs


class _Clients:
    """Two client threads sending inference requests through the gateway until stopped,
    counting the versions that answered and the failures they saw."""

    def __init__(self, url: str, model: str) -> None:
        self.url, self.model = url, model
        self.served: collections.Counter[str] = collections.Counter()
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(2)]

    def __enter__(self) -> _Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def reset(self) -> None:
        with self._lock:
            self.served.clear()
            self.failed = 0

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"/v2/models/{self.model}/infer", json=BODY)
                    ok, version = (
                        response.status_code == 200,
                        response.headers.get("x-model-version", "?"),
                    )
                except httpx.HTTPError:
                    ok, version = False, "?"
                with self._lock:
                    if ok:
                        self.served[version] += 1
                    else:
                        self.failed += 1
                # NOTE: pacing (about 200 requests/s per thread at most), not synchronisation.
                self._stop.wait(0.005)

    def table(self, title: str) -> Table:
        with self._lock:
            served, failed = dict(self.served), self.failed
        total = sum(served.values()) + failed
        table = Table("answered by", "requests", title=title)
        for version, count in sorted(served.items()):
            table.add_row(f"version {version}", str(count))
        table.add_row("[bold]failed, as the clients saw it[/bold]", f"{failed} of {total}")
        return table


def _run_one(
    client: httpx.Client, clients: _Clients, console: Console, model: str, version: str
) -> dict[str, Any]:
    base = f"/admin/v1/models/{model}/rollouts"
    started = client.post(base, json={"version": version, "alias": "prod", **ROLLOUT})
    started.raise_for_status()
    rollout: dict[str, Any] = started.json()
    console.print(
        f"\n[bold]rollout #{rollout['id']}[/bold]: {model} {rollout['baseline']} → {version},"
        f" steps {', '.join(f'{w}%' for w in rollout['steps'])}, {rollout['interval_s']:g}s"
        f" each (`modelgate rollout start {model} {version} --steps 10,50,100 --interval 3"
        " --min-requests 40 --max-latency-ratio 10 --alias prod`)",
        highlight=False,
        soft_wrap=True,
    )
    clients.reset()

    def fetch() -> dict[str, Any]:
        response = client.get(f"{base}/{rollout['id']}")
        response.raise_for_status()
        doc: dict[str, Any] = response.json()
        return doc

    final = follow(
        fetch,
        rollout,
        console=console,
        poll_s=0.5,
        transient=(httpx.HTTPError,),
        timeout_s=ROLLOUT_TIMEOUT_S,
    )
    console.print(clients.table(f"traffic while rollout #{rollout['id']} ran"))
    return final


def rollout_story(client: httpx.Client, url: str, model: str, console: Console) -> None:
    """Promote the good candidate, then watch the faulty one roll back by itself."""
    console.print(
        f"\n[bold]Rollouts[/bold]: {GOOD[0]} is a good candidate; {FAULTY[0]} fails half of"
        " its answers (label modelgate.fault.error_rate=0.5)",
        highlight=False,
    )
    with _Clients(url, model) as clients:
        _run_one(client, clients, console, model, GOOD[0])
        _run_one(client, clients, console, model, FAULTY[0])
    console.print(list_table(model, client.get(f"/admin/v1/models/{model}/rollouts").json()))
    arms = client.get(f"/admin/v1/models/{model}/traffic").json()["arms"]
    prod = client.get(f"/admin/v1/models/{model}/aliases/prod").json()["version"]
    console.print(
        "traffic policy now: " + ", ".join(f"{a['version']}={a['weight']}" for a in arms)
        + f"; alias prod → {prod}",
        highlight=False,
    )  # fmt: skip
