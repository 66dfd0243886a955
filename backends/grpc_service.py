"""The worker's calls of ``inference.GRPCInferenceService``: each parses its message, calls
the same `backends.dataplane.DataPlane` the REST routes call, and builds the reply.

Calls raise ``BackendError`` like the REST handlers do; `backends.grpc_server` turns them
into gRPC status codes with the same messages. ``ModelInfer`` and ``ModelStreamInfer``
take the serialized request (the gateway forwards it as it came), so an oversized one is
refused with the REST message before it is parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from google.protobuf.message import DecodeError

from backends.control import ControlAccess
from backends.dataplane import DataPlane, LoadedVersion, Outputs
from backends.errors import BackendError, InvalidRequest, PayloadTooLarge
from backends.grpc_codec import decode_infer, encode_infer
from backends.limits import shown
from backends.observe import Served
from backends.versions import requested_version
from modelgate.core.errors import ModelgateError
from modelgate.core.proto import inference_pb2 as pb

__all__ = ["INTERNAL_ERROR", "InferenceService"]

log = logging.getLogger("modelgate.worker.grpc")

#: What a client sees of an unexpected exception (the log has the traceback), as over REST.
INTERNAL_ERROR = "internal error; see the server log"
#: Requests of one stream that may run at once; the next is read when one finishes.
STREAM_WINDOW = 64


def metadata(context: Any, key: str) -> str | None:
    """The value of invocation metadata ``key`` (lower case), if the client sent it."""
    for item in context.invocation_metadata() or ():
        if item[0] == key:
            value: str = item[1]
            return value
    return None


def _version(named: str, context: Any) -> str | None:
    """The version a call names in its message and ``x-model-version`` metadata (400 if
    they differ), as REST's path and header (`backends.versions.requested_version`)."""
    return requested_version(named or None, metadata(context, "x-model-version"))


def _encode(target: LoadedVersion, request: Any, outputs: Outputs) -> pb.ModelInferResponse:
    return encode_infer(target.model, target.version, request.id, outputs)


def _string_param(params: Any, key: str) -> str | None:
    if key not in params:
        return None
    param = params[key]
    choice = param.WhichOneof("parameter_choice")
    if choice != "string_param":
        given = repr(getattr(param, choice)) if choice is not None else "empty"
        raise InvalidRequest(f'parameter "{key}" must be a string_param, not {shown(given)}')
    value: str = param.string_param
    return value


class InferenceService:
    """One method per call (``ServerLive`` → ``server_live``), as `backends.grpc_server`
    registers them."""

    def __init__(self, plane: DataPlane, control: ControlAccess) -> None:
        self.plane = plane
        self.control = control

    # -- health and metadata ----------------------------------------------------------

    async def server_live(self, _: pb.ServerLiveRequest, __: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=self.plane.live)

    async def server_ready(self, _: pb.ServerReadyRequest, __: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def model_ready(
        self, request: pb.ModelReadyRequest, context: Any
    ) -> pb.ModelReadyResponse:
        """``ready: false`` for anything the REST route refuses (not loaded, not ready,
        a version the worker does not serve), as tritonclient.http reports it."""
        try:
            self.plane.model_ready(request.name, _version(request.version, context))
        except BackendError:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    async def server_metadata(
        self, _: pb.ServerMetadataRequest, __: Any
    ) -> pb.ServerMetadataResponse:
        meta = self.plane.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta.name, version=meta.version, extensions=meta.extensions
        )

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, context: Any
    ) -> pb.ModelMetadataResponse:
        meta = self.plane.model_metadata(request.name, _version(request.version, context))
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=meta.versions or [],
            platform=meta.platform,
            inputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.inputs],
            outputs=[tensor(name=t.name, datatype=t.datatype, shape=t.shape) for t in meta.outputs],
        )

    # -- inference ----------------------------------------------------------------------

    def _parse(self, raw: bytes) -> pb.ModelInferRequest:
        limit = self.plane.options.max_body_bytes
        if len(raw) > limit:
            raise PayloadTooLarge(len(raw), limit)
        try:
            return pb.ModelInferRequest.FromString(raw)
        except DecodeError as exc:
            raise InvalidRequest(f"invalid ModelInferRequest message: {exc}") from None

    async def model_infer(self, raw: bytes, context: Any) -> pb.ModelInferResponse:
        return await self._infer(self._parse(raw), context)

    async def _infer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        """``model_version`` and/or the ``x-model-version`` metadata name the version; the
        data plane applies the worker's version rule to it."""
        version = _version(request.model_version, context)
        sent_id = traceparent = None
        for key, value in context.invocation_metadata() or ():
            if key == "x-request-id":
                sent_id = value
            elif key == "traceparent":
                traceparent = value
        model = request.model_name
        served = Served.start(self.plane.tracer, sent_id, traceparent, "grpc", model)
        return await self.plane.run(
            model, version, lambda limits: decode_infer(request, limits), _encode, served
        )

    async def _stream_one(self, raw: bytes, context: Any) -> pb.ModelStreamInferResponse:
        """The answer to one request of a stream; an error names the request's ``id`` (when
        it could be parsed) in ``infer_response``, as Triton does."""
        request = None
        try:
            request = self._parse(raw)
            return pb.ModelStreamInferResponse(infer_response=await self._infer(request, context))
        except ModelgateError as exc:
            message = exc.message
        except Exception:
            log.exception("unhandled error in a ModelStreamInfer request")
            message = INTERNAL_ERROR
        echo = (
            pb.ModelInferResponse(model_name=request.model_name, id=request.id)
            if request is not None
            else None
        )
        return pb.ModelStreamInferResponse(error_message=message, infer_response=echo)

    async def model_stream_infer(
        self, requests: AsyncIterator[bytes], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Each request answered by one response, in the order they finish (clients match
        them by ``id``); a failed request answers ``error_message`` and the stream goes on.

        NOTE: up to `STREAM_WINDOW` requests of a stream run at once, so that they batch
        together; the stream is read no further until one finishes (flow control pushes
        back on the client).
        """
        results: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        window = asyncio.Semaphore(STREAM_WINDOW)
        running: set[asyncio.Task[None]] = set()

        async def one(raw: bytes) -> None:
            try:
                results.put_nowait(await self._stream_one(raw, context))
            finally:
                window.release()

        async def read() -> None:
            try:
                async for raw in requests:
                    await window.acquire()
                    task = asyncio.create_task(one(raw))
                    running.add(task)
                    task.add_done_callback(running.discard)
                await asyncio.gather(*running)
            finally:
                results.put_nowait(None)

        reader = asyncio.create_task(read(), name="grpc stream reader")
        try:
            while (item := await results.get()) is not None:
                yield item
            await reader  # NOTE: re-raises what ended the read, if anything did
        finally:
            for task in (reader, *running):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(reader, *running, return_exceptions=True)

    # -- configuration and statistics --------------------------------------------------

    async def model_config(
        self, request: pb.ModelConfigRequest, context: Any
    ) -> pb.ModelConfigResponse:
        config = self.plane.model_config(request.name, _version(request.version, context))
        return pb.ModelConfigResponse(config=config)

    async def model_statistics(
        self, request: pb.ModelStatisticsRequest, context: Any
    ) -> pb.ModelStatisticsResponse:
        """Every loaded version without ``name``; every version of ``name`` without a
        ``version``; else that exact loaded version."""
        if not request.name:
            return self.plane.model_statistics(None, None)
        return self.plane.model_statistics(request.name, _version(request.version, context))

    # -- repository --------------------------------------------------------------------

    async def repository_index(
        self, request: pb.RepositoryIndexRequest, _: Any
    ) -> pb.RepositoryIndexResponse:
        """Every loaded version (only the ready ones when ``ready`` is set); open, as the
        REST index is (`backends.control`)."""
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                index(name=v.model, version=v.version, state=v.state.upper())
                for v in self.plane.loaded()
                if not request.ready or v.state == "ready"
            ]
        )

    async def repository_model_load(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        """Load ``model_name`` at the ``version`` parameter; needs the control token as
        ``authorization: Bearer <token>`` metadata."""
        self.control.check(metadata(context, "authorization"))
        version = _string_param(request.parameters, "version")
        if not version:
            raise InvalidRequest(
                'load needs a version: set the "version" parameter (a string_param)'
            )
        await self.plane.load(request.model_name, version)
        return pb.RepositoryModelLoadResponse()

    async def repository_model_unload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        """Unload the ``version`` parameter's version, or every loaded version of
        ``model_name``; needs the control token, as load does."""
        self.control.check(metadata(context, "authorization"))
        version = _string_param(request.parameters, "version")
        await self.plane.unload(request.model_name, version or None)
        return pb.RepositoryModelUnloadResponse()
