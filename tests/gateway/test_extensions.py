"""The Triton extensions' cores without HTTP in front: `TritonExtensions` (config, statistics
summed over workers) and `FleetRepository` (index, load, unload placed on workers), over the
real routing table, balancer and forwarder, with fake workers on 127.0.0.1
(`tests.support.fake_workers`) as the only fakes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import semver

from gateway.balancing.balancer import Balancer, WorkerInfo
from gateway.errors import BackendUnavailable, BadGatewayRequest, RepositoryFailed, WorkerAnswered
from gateway.extensions import TritonExtensions, merge_stats, zero_stats
from gateway.forward import Forwarder
from gateway.repository import FleetRepository
from gateway.routing import RoutingTable
from gateway.settings import GatewaySettings
from registry.errors import NoReadyVersion
from registry.resolution import ModelView, VersionInfo
from registry.snapshot import RegistrySnapshot
from tests.support.fake_workers import FakeWorker, refused_url

MODEL = "m"
VERSIONS = ("1.0.0", "2.0.0", "3.0.0-rc.1")


def duration(count: int, ns: int) -> dict[str, int]:
    return {"count": count, "ns": ns}


def stat(version: str, n: int, last: int, batches: Mapping[int, int]) -> dict[str, Any]:
    """A worker's `$model_stat` after ``n`` requests of 10 ns each, ``batches`` executions
    per batch size."""
    executions = sum(batches.values())
    return {
        "name": MODEL,
        "version": version,
        "last_inference": last,
        "inference_count": n,
        "execution_count": executions,
        "inference_stats": {
            "success": duration(n, 10 * n),
            "fail": duration(0, 0),
            "queue": duration(n, n),
            "compute_input": duration(executions, executions),
            "compute_infer": duration(executions, 5 * executions),
            "compute_output": duration(executions, executions),
            "cache_hit": duration(0, 0),
        },
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": duration(count, count),
                "compute_infer": duration(count, 5 * count),
                "compute_output": duration(count, count),
            }
            for size, count in batches.items()
        ],
    }


@dataclass
class Fleet:
    table: RoutingTable
    extensions: TritonExtensions
    repository: FleetRepository
    fakes: dict[str, FakeWorker]


Build = Callable[..., Awaitable[Fleet]]


@pytest.fixture
async def build() -> AsyncIterator[Build]:
    """Makes a routing table over fake workers: ``serves`` maps each id to the versions it
    has ready; ids in ``refused`` listen nowhere, ids in ``external`` are external servers
    whose every version is known to them as ``other``@``1``."""
    made: list[tuple[Forwarder, list[FakeWorker]]] = []

    async def make(
        serves: Mapping[str, Iterable[str]],
        *,
        refused: Iterable[str] = (),
        external: Iterable[str] = (),
        **overrides: Any,
    ) -> Fleet:
        settings = GatewaySettings(**{"slow_start_s": 0, **overrides})
        fakes: dict[str, FakeWorker] = {}
        workers: dict[str, WorkerInfo] = {}
        for worker_id, versions in serves.items():
            if worker_id in refused:
                url = refused_url()
            else:
                fakes[worker_id] = await FakeWorker(worker_id).start()
                url = fakes[worker_id].url
            ready = frozenset((MODEL, v) for v in versions)
            outside = worker_id in external
            remote = {pair: ("other", "1") for pair in ready} if outside else {}
            workers[worker_id] = WorkerInfo(
                worker_id, url, ready, 0.0, remote=remote, external=outside
            )
        infos = [VersionInfo(v, semver.Version.parse(v)) for v in VERSIONS]
        table = RoutingTable(Balancer(settings))
        table.install(RegistrySnapshot(1, {MODEL: ModelView.build(MODEL, infos)}))
        table.workers_changed(workers)
        for worker_id in external:  # external servers join unready: their first probe passed
            for model, version in workers[worker_id].ready:
                table.balancer.mark_ready(worker_id, model, version)
        forwarder = Forwarder()
        await forwarder.start()
        made.append((forwarder, list(fakes.values())))
        return Fleet(
            table,
            TritonExtensions(table, forwarder, settings),
            FleetRepository(table, forwarder, settings),
            fakes,
        )

    yield make
    for forwarder, fakes in made:
        await forwarder.stop()
        for fake in fakes:
            await fake.stop()


def paths(fake: FakeWorker) -> list[str]:
    return [path for path, _ in fake.requests]


# -- statistics ------------------------------------------------------------------------


def test_merging_adds_counts_and_durations_and_keeps_the_latest_inference() -> None:
    total = zero_stats(MODEL, "1.0.0")
    merge_stats(total, stat("1.0.0", 3, last=500, batches={1: 3}))
    merge_stats(total, {**stat("1.0.0", 4, last=200, batches={1: 2, 2: 1}), "extra": {"k": 2}})
    assert total["last_inference"] == 500
    assert (total["inference_count"], total["execution_count"]) == (7, 6)
    assert total["inference_stats"]["success"] == duration(7, 70)
    assert total["inference_stats"]["compute_infer"] == duration(6, 30)
    assert total["inference_stats"]["fail"] == duration(0, 0)
    assert [(b["batch_size"], b["compute_infer"]) for b in total["batch_stats"]] == [
        (1, duration(5, 25)),
        (2, duration(1, 5)),
    ]
    assert total["extra"] == {"k": 2}
    assert (total["name"], total["version"]) == (MODEL, "1.0.0")


async def test_statistics_are_summed_over_the_workers_that_serve_each_version(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = await build({"a": ["1.0.0", "2.0.0"], "b": ["1.0.0"], "c": ["1.0.0"]}, refused=["c"])
    a, b = fleet.fakes["a"], fleet.fakes["b"]
    one = f"/v2/models/{MODEL}/versions/1.0.0/stats"
    a.answers[one] = (200, {"model_stats": [stat("1.0.0", 3, last=100, batches={1: 3})]})
    b.answers[one] = (200, {"model_stats": [stat("1.0.0", 5, last=900, batches={1: 1, 4: 1})]})
    two = f"/v2/models/{MODEL}/versions/2.0.0/stats"
    a.answers[two] = (200, {"model_stats": [stat("2.0.0", 2, last=50, batches={2: 1})]})
    with caplog.at_level(logging.WARNING, "modelgate.gateway.extensions"):
        doc = await fleet.extensions.statistics()
    first, second = doc["model_stats"]  # 3.0.0-rc.1: no worker serves it, not listed
    assert (first["version"], first["inference_count"], first["execution_count"]) == (
        "2.0.0",
        2,
        1,
    )
    assert (second["version"], second["inference_count"], second["execution_count"]) == (
        "1.0.0",
        8,
        5,
    )
    assert second["last_inference"] == 900
    assert second["inference_stats"]["success"] == duration(8, 80)
    assert [(s["batch_size"], s["compute_infer"]["count"]) for s in second["batch_stats"]] == [
        (1, 4),
        (4, 1),
    ]
    assert "leave out worker c" in caplog.text
    one_version = await fleet.extensions.statistics(MODEL, "^1.0")
    assert [s["version"] for s in one_version["model_stats"]] == ["1.0.0"]
    assert one_version["model_stats"][0]["inference_count"] == 8


async def test_statistics_of_a_version_no_worker_answers_for_are_a_503(build: Build) -> None:
    fleet = await build({"a": ["1.0.0"], "c": ["1.0.0"]}, refused=["c"])
    fleet.fakes["a"].mode = 500
    with pytest.raises(BackendUnavailable, match=r"m@1\.0\.0: a \(.*500.*\); c \("):
        await fleet.extensions.statistics(MODEL, "1.0.0")
    with pytest.raises(NoReadyVersion, match=r"3\.0\.0-rc\.1"):
        await fleet.extensions.statistics(MODEL, "3.0.0-rc.1")
    assert (await fleet.extensions.statistics(MODEL))["model_stats"] == []


async def test_an_external_servers_statistics_are_asked_for_and_named_by_its_own_names(
    build: Build,
) -> None:
    fleet = await build({"t": ["1.0.0"]}, external=["t"])
    entry = {**stat("1", 2, last=1, batches={1: 2}), "name": "other"}
    fleet.fakes["t"].answers["/v2/models/other/versions/1/stats"] = (200, {"model_stats": [entry]})
    (only,) = (await fleet.extensions.statistics(MODEL, "1.0.0"))["model_stats"]
    assert (only["name"], only["version"], only["inference_count"]) == (MODEL, "1.0.0", 2)


# -- config ----------------------------------------------------------------------------


async def test_config_comes_from_a_worker_serving_the_resolved_version(build: Build) -> None:
    fleet = await build({"a": ["1.0.0"], "t": ["2.0.0"]}, external=["t"])
    config = {"name": "other", "platform": "onnxruntime_onnx", "max_batch_size": 8}
    fleet.fakes["t"].answers["/v2/models/other/versions/1/config"] = (200, config)
    served = await fleet.extensions.config(MODEL, "stable")
    assert (served.version, served.worker) == ("2.0.0", "t")
    assert served.doc == {**config, "name": MODEL}
    fleet.fakes["a"].answers[f"/v2/models/{MODEL}/versions/1.0.0/config"] = (
        404,
        {"error": "no such thing"},
    )
    with pytest.raises(WorkerAnswered, match=r"worker a answered 404.*no such thing") as caught:
        await fleet.extensions.config(MODEL, "~1.0.0")
    assert caught.value.status_code == 404


# -- repository ------------------------------------------------------------------------


def load_path(version: str) -> str:
    return f"/v2/repository/models/{MODEL}/versions/{version}/load"


async def test_a_load_goes_to_every_modelgate_worker_with_the_control_token(
    build: Build,
) -> None:
    fleet = await build({"a": [], "b": [], "t": []}, external=["t"], worker_control_token="s3cret")
    assert await fleet.repository.load(MODEL, None, {}) == {}  # stable: 2.0.0
    for worker in ("a", "b"):
        (request,) = fleet.fakes[worker].requests
        assert request[0] == load_path("2.0.0")
        assert request[1]["authorization"] == "Bearer s3cret"
    assert fleet.fakes["t"].requests == []
    assert fleet.table.balancer.serving(MODEL, "2.0.0") == ("a", "b")
    await fleet.repository.load(MODEL, None, {"version": "^1.0", "workers": "b"})
    assert paths(fleet.fakes["b"])[-1] == load_path("1.0.0")
    assert fleet.table.balancer.serving(MODEL, "1.0.0") == ("b",)
    await fleet.repository.load(MODEL, "3.0.0-rc.1", {"unload_dependents": False})
    assert paths(fleet.fakes["a"])[-1] == load_path("3.0.0-rc.1")


async def test_a_load_that_fails_names_each_worker_and_why(build: Build) -> None:
    fleet = await build({"a": [], "b": [], "c": []}, refused=["c"])
    fleet.fakes["b"].mode = 403
    with pytest.raises(RepositoryFailed) as caught:
        await fleet.repository.load(MODEL, "1.0.0", {})
    message = caught.value.message
    assert message.startswith("load of m@1.0.0 failed on 2 worker(s): b: answered 403")
    assert "set MODELGATE_GATEWAY_WORKER_CONTROL_TOKEN" in message
    assert "c: worker at 127.0.0.1" in message
    assert caught.value.status_code == 503
    assert fleet.table.balancer.serving(MODEL, "1.0.0") == ("a",)
    fleet.fakes["a"].mode = fleet.fakes["b"].mode = 404
    with pytest.raises(RepositoryFailed) as caught:
        await fleet.repository.load(MODEL, "1.0.0", {"workers": "a,b"})
    assert caught.value.status_code == 404  # every worker refused it the same way


@pytest.mark.parametrize(
    ("reference", "parameters", "message"),
    [
        (None, {"workers": "a,zz"}, 'unknown worker "zz" \\(announced: a\\)'),
        (None, {"workers": "t"}, 'worker "t" is an external server'),
        (None, {"config": "{}"}, "unsupported repository parameter.*'config'"),
        ("1.0.0", {"version": "2.0.0"}, "the version is given twice"),
        (None, {"version": 2}, 'parameter "version" must be a non-empty string'),
    ],
)
async def test_a_repository_call_with_bad_parameters_is_a_400(
    build: Build, reference: str | None, parameters: dict[str, Any], message: str
) -> None:
    fleet = await build({"a": [], "t": []}, external=["t"])
    with pytest.raises(BadGatewayRequest, match=message):
        await fleet.repository.load(MODEL, reference, parameters)
    assert fleet.fakes["a"].requests == []


async def test_an_unload_withdraws_the_version_first_and_succeeds_where_it_was_not(
    build: Build,
) -> None:
    fleet = await build({"a": ["1.0.0", "2.0.0"], "b": ["2.0.0"]})
    unload = f"/v2/repository/models/{MODEL}/versions/1.0.0/unload"
    fleet.fakes["b"].answers[unload] = (404, {"error": "not loaded"})
    assert await fleet.repository.unload(MODEL, "~1.0", {}) == {}
    assert paths(fleet.fakes["a"]) == paths(fleet.fakes["b"]) == [unload]
    assert not fleet.table.balancer.has_ready(MODEL, "1.0.0")
    fleet.fakes["a"].mode = 500
    with pytest.raises(RepositoryFailed, match=r"unload of every version of m failed .* a: "):
        await fleet.repository.unload(MODEL, None, {"workers": "a"})
    assert paths(fleet.fakes["a"])[-1] == f"/v2/repository/models/{MODEL}/unload"
    assert fleet.table.balancer.serving(MODEL, "2.0.0") == ("a", "b")  # given back


async def test_the_index_lists_every_version_ready_where_some_worker_has_it(
    build: Build,
) -> None:
    fleet = await build({"a": ["2.0.0"]})
    assert fleet.repository.index() == [
        {"name": MODEL, "version": "3.0.0-rc.1", "state": "UNAVAILABLE",
         "reason": "not loaded on any worker"},
        {"name": MODEL, "version": "2.0.0", "state": "READY"},
        {"name": MODEL, "version": "1.0.0", "state": "UNAVAILABLE",
         "reason": "not loaded on any worker"},
    ]  # fmt: skip
    assert fleet.repository.index(ready_only=True) == [
        {"name": MODEL, "version": "2.0.0", "state": "READY"}
    ]
