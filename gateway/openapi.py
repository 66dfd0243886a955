"""The data plane in the OpenAPI document: the bare-ASGI ``/v2`` surface (`gateway.oip`),
which Litestar does not see, described here and merged by `modelgate.core.openapi.Document`.

Open Inference Protocol v2 over REST (server and model metadata, health, readiness,
inference, JSON and the binary tensor extension) and Triton's extensions (model config,
statistics, the model repository). The error statuses come from the error classes each
route raises, as on the admin API (`modelgate.core.openapi.error_responses`).
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway._openapi_schemas import STR, components, ref
from gateway.errors import (
    BackendUnavailable,
    BadGatewayRequest,
    DeadlineExceeded,
    LimiterUnavailable,
    NoReadyWorker,
    Overloaded,
    RateLimited,
    RegistryNotLoaded,
)
from modelgate.core.errors import BodyTooLarge, ClientDisconnected
from modelgate.core.openapi import Answer, Raisable, Spec, error_responses, header, json_body
from registry.errors import (
    AliasNotFound,
    BadRequest,
    Forbidden,
    ModelNotFound,
    NoReadyVersion,
    NoVersionSatisfies,
    Unauthorized,
    VersionNotFound,
)

__all__ = ["TAGS", "components", "paths"]

TAGS: list[Spec] = [
    {"name": "inference", "description": "Open Inference Protocol v2 (KServe, Triton)."},
    {"name": "triton", "description": "Triton's config, statistics and repository extensions."},
]


# -- parameters and headers ---------------------------------------------------------------


def _header(name: str, description: str, schema: Spec | None = None) -> Spec:
    return {"name": name, "in": "header", "required": False, **header(description, schema)}


_MODEL = {"name": "model", "in": "path", "required": True, "schema": STR}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "description": "An exact version, an alias, stable, latest, or a one-token constraint "
    "(^1.2, ~1.3.5, 1.x).",
    "schema": STR,
}
_X_VERSION = _header(
    "X-Model-Version",
    "Any version constraint (spaces and || included); not with a version in the path.",
)
_X_ROUTE_KEY = _header(
    "X-Route-Key", "Sticky key: the same key gets the same arm while the policy is unchanged."
)
_X_TIMEOUT = _header(
    "X-Request-Timeout-Ms", "The client's deadline in milliseconds.", {"type": "number"}
)
_X_MODEL = {**_header("X-Model", "The model to infer with."), "required": True}
_INFER_LENGTH = _header(
    "Inference-Header-Content-Length",
    "Binary tensor extension: the length of the JSON part; tensor bytes follow it.",
    {"type": "integer", "minimum": 0},
)
_SERVED = {
    "X-Model-Version": header("The concrete version that served."),
    "X-Backend": header("The worker that served."),
    "X-Route": header("The policy arm or rule that chose the version."),
}

# -- what each route raises -------------------------------------------------------------------

#: A worker's own answer names what served it, as a success does.
_NAMED = dict.fromkeys(("X-Model-Version", "X-Backend", "X-Route"), "")
_CALLER: tuple[Raisable, ...] = (Unauthorized, Forbidden, RegistryNotLoaded)
_RESOLVE: tuple[Raisable, ...] = (
    BadGatewayRequest,
    BadRequest,
    ModelNotFound,
    VersionNotFound,
    AliasNotFound,
    NoVersionSatisfies,
    NoReadyVersion,
    NoReadyWorker,
)
_FORWARDED = (BackendUnavailable, DeadlineExceeded)
#: A GET forwarded to one worker: unreachable (503). NOTE: a worker that accepts and then
#: hangs past ``request_timeout_s`` would make it a 504; probes mark such a worker unready
#: first, so that 504 is not declared (no call can be made to answer it reliably).
_FETCHED = (BackendUnavailable,)
_INFER = (
    *_CALLER,
    *_RESOLVE,
    *_FORWARDED,
    ClientDisconnected,
    BodyTooLarge,
    Overloaded,
    RateLimited,
    LimiterUnavailable,
    Answer(400, "The worker refused the tensors (its 4xx answers pass through).", _NAMED),
    Answer(500, "The worker's own failure, passed through when no other worker could.", _NAMED),
)
_ADMIN = (Unauthorized, Forbidden, RegistryNotLoaded)


def _op(
    summary: str,
    ok: Spec,
    raises: Sequence[Raisable],
    *,
    tag: str = "inference",
    params: Sequence[Spec] = (),
    body: Spec | None = None,
    secure: bool = True,
) -> Spec:
    op: Spec = {
        "tags": [tag],
        "summary": summary,
        "parameters": list(params),
        "responses": {"200": ok, **error_responses(raises)},
    }
    if body is not None:
        op["requestBody"] = body
    # NOTE: an inference token is optional unless MODELGATE_GATEWAY_INFERENCE_AUTH=required.
    op["security"] = [{"bearer": []}, {}] if secure else []
    return op


def _ok(schema: str, description: str, headers: Spec | None = None) -> Spec:
    out = json_body(ref(schema), description)
    if headers:
        out["headers"] = headers
    return out


_INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": ref("InferenceRequest")},
        "application/octet-stream": {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "Binary tensor extension: the JSON request, then tensor bytes.",
            }
        },
    },
}


def _infer_ok() -> Spec:
    length = header("Binary tensor extension: the length of the JSON part.")
    out = _ok(
        "InferenceResponse", "The outputs.", {**_SERVED, "Inference-Header-Content-Length": length}
    )
    out["content"]["application/octet-stream"] = {
        "schema": {
            "type": "string",
            "format": "binary",
            "description": "Binary tensor extension: the JSON response, then tensor bytes.",
        }
    }
    return out


def _model_paths(prefix: str, params: list[Spec]) -> dict[str, Spec]:
    routed = [*params, _X_VERSION]
    resolve = (*_CALLER, *_RESOLVE)
    #: What a GET answered by one worker names: the version and the worker.
    fetched = dict(list(_SERVED.items())[:2])
    return {
        prefix: {
            "get": _op(
                "Model metadata, from a worker serving the resolved version.",
                _ok("ModelMetadata", "The model's metadata.", fetched),
                (*resolve, *_FETCHED),
                params=routed,
            )
        },
        f"{prefix}/ready": {
            "get": _op(
                "Whether the version resolves to one with a ready worker (else 404 or 503).",
                _ok("ModelReady", "Ready.", {"X-Model-Version": _SERVED["X-Model-Version"]}),
                resolve,
                params=routed,
            )
        },
        f"{prefix}/infer": {
            "post": _op(
                "Inference: resolve, split, balance, forward.",
                _infer_ok(),
                _INFER,
                params=[*routed, _X_ROUTE_KEY, _X_TIMEOUT, _INFER_LENGTH],
                body=_INFER_BODY,
            )
        },
        f"{prefix}/config": {
            "get": _op(
                "Triton's model configuration of the resolved version.",
                _ok("ModelConfig", "The configuration.", fetched),
                (*resolve, *_FETCHED),
                tag="triton",
                params=routed,
            )
        },
        f"{prefix}/stats": {
            "get": _op(
                "Triton's statistics, per version, summed over workers (every served version "
                "of the model when no version is named, in the path or X-Model-Version).",
                _ok("ModelStatistics", "The statistics."),
                # NOTE: a worker that does not answer is left out of the sum, never an error;
                # a version named, by the path or X-Model-Version, is resolved (400, 503).
                resolve,
                tag="triton",
                params=routed,
            )
        },
    }


def _repository() -> dict[str, Spec]:
    body = {
        "required": False,
        "content": {"application/json": {"schema": ref("RepositoryRequest")}},
    }
    done = json_body({"type": "object"}, "Placed on (or removed from) every worker asked.")
    # NOTE: a body that does not decode (400) or is over 64 KiB (413) on every call.
    read = (*_ADMIN, BadGatewayRequest, BodyTooLarge)
    # NOTE: `gateway.errors.RepositoryFailed` picks its status per failure (its class says
    # 500, which it never answers), so it is declared by the one status it is on its own.
    failed = Answer(
        503,
        "RepositoryFailed: the load or unload failed on some worker (the workers' own 4xx "
        "when every one refused alike, e.g. 404)",
        {"Retry-After": "1"},
    )
    placed = (
        *read,
        BadRequest,
        ModelNotFound,
        VersionNotFound,
        AliasNotFound,
        NoVersionSatisfies,
        NoReadyWorker,
        failed,
        *_FETCHED,
    )
    model = [_MODEL]
    versioned = [_MODEL, {**_VERSION, "description": "The version to place (any reference)."}]
    verbs: dict[str, Spec] = {}
    for verb, summary in (("load", "Load a version on"), ("unload", "Unload a version from")):
        verbs[f"/v2/repository/models/{{model}}/{verb}"] = {
            "post": _op(f"{summary} workers.", done, placed, tag="triton", params=model, body=body)
        }
        verbs[f"/v2/repository/models/{{model}}/versions/{{version}}/{verb}"] = {
            "post": _op(
                f"{summary} workers (the version in the path, not in the parameters).",
                done,
                placed,
                tag="triton",
                params=versioned,
                body=body,
            )
        }
    return {
        "/v2/repository/index": {
            "post": _op(
                "Every version the registry knows, READY where a worker serves it.",
                _ok("RepositoryIndex", "The index."),
                read,
                tag="triton",
                body={
                    "required": False,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
            )
        },
        **verbs,
    }


def paths() -> dict[str, Spec]:
    """Every ``/v2`` path the gateway serves, as OpenAPI Path Item objects."""
    server = {
        "/v2": {
            "get": _op("Server metadata.", _ok("ServerMetadata", "The server."), (), secure=False)
        },
        "/v2/health/live": {"get": _op("Liveness.", _ok("ServerLive", "Live."), (), secure=False)},
        "/v2/health/ready": {
            "get": _op(
                "Readiness: the routing table is loaded (degraded stores are listed).",
                _ok("ServerReady", "Ready."),
                (Answer(503, "The routing table has not been loaded yet."),),
                secure=False,
            )
        },
        "/v2/infer": {
            "post": _op(
                "Inference routed by headers alone: X-Model and X-Model-Version.",
                _infer_ok(),
                _INFER,
                params=[
                    _X_MODEL,
                    _X_VERSION,
                    _X_ROUTE_KEY,
                    _X_TIMEOUT,
                    _INFER_LENGTH,
                ],
                body=_INFER_BODY,
            )
        },
        "/v2/models/stats": {
            "get": _op(
                "Triton's statistics of every served version.",
                _ok("ModelStatistics", "The statistics."),
                _CALLER,
                tag="triton",
            )
        },
    }
    models = _model_paths("/v2/models/{model}", [_MODEL])
    versions = _model_paths("/v2/models/{model}/versions/{version}", [_MODEL, _VERSION])
    return {**server, **models, **versions, **_repository()}
