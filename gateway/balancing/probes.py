"""Active health probes: each worker's per-version ready endpoint, every few seconds.

A failed probe takes that version of that worker out of rotation until a probe succeeds,
and tells ``on_unready`` (the data plane, which abandons the requests in flight there that
can go elsewhere); a success also ends an outlier ejection early. Probes run off the
request path, each bounded by ``timeout_s``, so a hung worker is found within about
``interval_s + timeout_s``.

An external OIP server (``WorkerInfo.external``) is asked under the names it knows each
version by (``WorkerInfo.remote``): ``GET {url}/v2/models/{m}[/versions/{v}]/ready`` over
HTTP, or ``ModelReady`` over gRPC when it serves only gRPC. Its versions join unready (the
balancer's rule), and its first passing probe admits each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import grpc
import httpx

from gateway.balancing.balancer import Balancer, WorkerInfo
from modelgate.core.proto import inference_pb2 as pb
from modelgate.core.proto.service import path

__all__ = ["Prober", "ready_path"]

log = logging.getLogger("modelgate.gateway.probes")

Key = tuple[str, str, str]


def ready_path(model: str, version: str) -> str:
    """The OIP REST path of a version's ``ready`` check; an empty ``version`` names none."""
    if not version:
        return f"/v2/models/{model}/ready"
    return f"/v2/models/{model}/versions/{version}/ready"


class Prober:
    def __init__(
        self,
        balancer: Balancer,
        *,
        interval_s: float = 2.0,
        timeout_s: float = 1.0,
        on_unready: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.balancer = balancer
        #: Called with (worker id, model, version) on every failed probe; must not block.
        self.on_unready = on_unready
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.workers: Mapping[str, WorkerInfo] = {}
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self.failing: set[Key] = set()
        #: External servers' versions that passed a probe since they were registered.
        self.admitted: set[Key] = set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout_s)
        self._task = asyncio.create_task(self._run(), name="prober")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()
        for channel in self._channels.values():
            await channel.close()
        self._channels = {}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.probe_all()

    async def probe_all(self) -> None:
        workers = list(self.workers.values())
        keys = {(w.id, m, v) for w in workers for m, v in w.ready}
        # NOTE: forget verdicts on versions no longer announced: a worker that left while
        # failing and came back under its id must be judged afresh.
        self.failing &= keys
        self.admitted &= keys
        targets = {w.grpc_url for w in workers if _over_grpc(w)}
        for gone in set(self._channels) - targets:
            await self._channels.pop(gone).close()
        checks = [self._probe(w, model, version) for w in workers for model, version in w.ready]
        if checks:
            await asyncio.gather(*checks)

    async def _ready(self, worker: WorkerInfo, model: str, version: str) -> bool:
        remote_model, remote_version = worker.remote.get((model, version), (model, version))
        if _over_grpc(worker):
            return await self._grpc_ready(worker, remote_model, remote_version)
        assert self._client is not None
        try:
            url = worker.url + ready_path(remote_model, remote_version)
            return (await self._client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    async def _grpc_ready(self, worker: WorkerInfo, model: str, version: str) -> bool:
        assert worker.grpc_url is not None
        channel = self._channels.get(worker.grpc_url)
        if channel is None:
            channel = self._channels[worker.grpc_url] = grpc.aio.insecure_channel(worker.grpc_url)
        call = channel.unary_unary(
            path("ModelReady"),
            request_serializer=pb.ModelReadyRequest.SerializeToString,
            response_deserializer=pb.ModelReadyResponse.FromString,
        )
        try:
            answer = await call(
                pb.ModelReadyRequest(name=model, version=version), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError:
            return False
        return bool(answer.ready)

    async def _probe(self, worker: WorkerInfo, model: str, version: str) -> None:
        key = (worker.id, model, version)
        if await self._ready(worker, model, version):
            if key in self.failing:
                # NOTE: readmit only a worker whose probes had failed (it was down and is back);
                # one that answers /ready but fails inference stays ejected for its full term.
                self.failing.discard(key)
                log.info("probe: %s serves %s@%s again", worker.id, model, version)
                self.balancer.mark_ready(worker.id, model, version)
                self.balancer.readmit(worker.id)
            elif worker.external and key not in self.admitted:
                log.info("probe: external server %s serves %s@%s", worker.id, model, version)
                self.balancer.mark_ready(worker.id, model, version)
            if worker.external:
                self.admitted.add(key)
            return
        if key not in self.failing:
            self.failing.add(key)
            log.warning("probe: %s does not serve %s@%s", worker.id, model, version)
        # NOTE: on every failed probe, not only the first: a new announcement of the
        # worker's ready set clears the balancer's verdict, and attempts that could not be
        # moved last time (no retry slot) may be movable now. Both calls are idempotent.
        self.balancer.mark_unready(worker.id, model, version)
        if self.on_unready is not None:
            self.on_unready(worker.id, model, version)


def _over_grpc(worker: WorkerInfo) -> bool:
    """An external server registered with protocol ``grpc`` (it has no REST URL)."""
    return worker.external and not worker.url and worker.grpc_url is not None
