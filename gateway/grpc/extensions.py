"""The gateway's gRPC calls of Triton's extensions: ``ModelConfig``, ``ModelStatistics``
and the repository calls, over the same transport-free cores as HTTP's routes
(`gateway.extensions`, `gateway.repository`); Triton's JSON documents become their
protobuf messages by `json_format` (fields the messages leave out are ignored).

``ModelConfig`` and ``ModelStatistics`` identify the caller as every model call does; the
repository calls need an admin token in the ``authorization`` metadata, as over HTTP. A
load or unload names its version in the ``version`` parameter (a ``string_param``: any
reference), its workers in ``workers``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format

from gateway.errors import BackendUnavailable
from gateway.extensions import TritonExtensions
from gateway.grpc.peers import caller
from gateway.grpc.service import Context, InferenceService, abort, reference
from gateway.repository import FleetRepository
from modelgate.core.errors import ModelgateError
from modelgate.core.proto import inference_pb2 as pb

__all__ = ["ExtensionCalls"]

_INDEXED = ("name", "version", "state", "reason")


def _message(doc: Any, message: Any, what: str) -> Any:
    """``doc`` (Triton's JSON) parsed into ``message``; a document that does not fit is a
    worker's bad answer (503, retry), never a 500."""
    try:
        return json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise BackendUnavailable(
            f"the workers' {what} does not fit Triton's: {exc}", "reset"
        ) from None


def _parameters(parameters: Mapping[str, pb.ModelRepositoryParameter]) -> dict[str, Any]:
    """A repository request's parameters as the values they hold."""
    out: dict[str, Any] = {}
    for name, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        out[name] = getattr(parameter, choice) if choice is not None else None
    return out


class ExtensionCalls:
    """The extension calls of one `InferenceService`."""

    def __init__(
        self,
        service: InferenceService,
        extensions: TritonExtensions,
        repository: FleetRepository,
    ) -> None:
        self.service = service
        self.extensions = extensions
        self.repository = repository

    def _reference(self, version: str, context: Context) -> str | None:
        raw = context.invocation_metadata() or ()
        caller(self.service.identity, raw, context.peer())
        return reference(version, {k: v for k, v in raw if isinstance(v, str)})

    def _admin(self, context: Context) -> str:
        """Who asks (an admin token, else 401/403), as the audit line names it."""
        raw = context.invocation_metadata() or ()
        headers = [
            (k.encode(), v.encode("latin-1") if isinstance(v, str) else v)
            for k, v in raw
            if k == "authorization"
        ]
        return f'by token "{self.service.identity.admin(headers).name}"'

    async def model_config(self, request: pb.ModelConfigRequest, context: Context) -> Any:
        try:
            served = await self.extensions.config(
                request.name, self._reference(request.version, context)
            )
            config = _message(served.doc, pb.ModelConfig(), "model configuration")
        except ModelgateError as exc:
            await abort(context, exc)
        context.set_trailing_metadata(
            (("x-model-version", served.version), ("x-backend", served.worker))
        )
        return pb.ModelConfigResponse(config=config)

    async def model_statistics(self, request: pb.ModelStatisticsRequest, context: Context) -> Any:
        """Every model's served versions without ``name``; every served version of
        ``name`` without a version; else the version the reference resolves to."""
        try:
            version = self._reference(request.version, context)
            doc = await self.extensions.statistics(request.name or None, version)
            return _message(doc, pb.ModelStatisticsResponse(), "statistics")
        except ModelgateError as exc:
            await abort(context, exc)

    async def repository_index(self, request: pb.RepositoryIndexRequest, context: Context) -> Any:
        try:
            self._admin(context)
            index = self.repository.index(ready_only=request.ready)
        except ModelgateError as exc:
            await abort(context, exc)
        entry = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[entry(**{k: e[k] for k in _INDEXED if k in e}) for e in index]
        )

    async def repository_model_load(
        self, request: pb.RepositoryModelLoadRequest, context: Context
    ) -> Any:
        try:
            actor = self._admin(context)
            parameters = _parameters(request.parameters)
            await self.repository.load(request.model_name, None, parameters, actor=actor)
        except ModelgateError as exc:
            await abort(context, exc)
        return pb.RepositoryModelLoadResponse()

    async def repository_model_unload(
        self, request: pb.RepositoryModelUnloadRequest, context: Context
    ) -> Any:
        try:
            actor = self._admin(context)
            parameters = _parameters(request.parameters)
            await self.repository.unload(request.model_name, None, parameters, actor=actor)
        except ModelgateError as exc:
            await abort(context, exc)
        return pb.RepositoryModelUnloadResponse()
