"""Errors of the worker. Each maps to an HTTP status; ``modelgate.core.rendering`` renders them.

::

    BackendError
    ├── InvalidRequest          400  malformed JSON, framing, parameters, limits exceeded
    │   ├── InvalidTensor       400  a tensor that does not fit its declaration or the model
    │   ├── Unsupported         400  a protocol feature the worker does not implement
    │   └── VersionRefused      400  a version reference that is not a loaded exact version
    ├── LoadFailed              400  a version that cannot be loaded
    ├── ControlUnauthorized     401  a load/unload without the control token
    ├── ControlForbidden        403  a load/unload with a wrong control token
    ├── ControlDisabled         403  a load/unload on a worker that has no control token
    ├── ModelNotLoaded          404
    ├── PayloadTooLarge         413
    │   └── InflatedTooLarge    413  a compressed body that inflates past the limit
    ├── ModelNotReady           503  loading, or being unloaded
    ├── QueueFull               503
    ├── Draining                503
    ├── InferenceFailed         500  the worker's own failure (memory, device, a bug)
    └── InjectedFault           500  fault injection

Foreign exceptions (onnxruntime, numpy) are translated into these at the boundary where
they are raised, once: callers above the runtime and codec only ever see ``BackendError``.
A client's input only ever raises a 4xx; a 5xx means the worker itself is in trouble,
which is what the gateway counts against its health.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelgate.core.errors import ModelgateError

__all__ = [
    "BackendError",
    "ControlDisabled",
    "ControlForbidden",
    "ControlUnauthorized",
    "Draining",
    "InferenceFailed",
    "InflatedTooLarge",
    "InjectedFault",
    "InvalidRequest",
    "InvalidTensor",
    "LoadFailed",
    "ModelNotLoaded",
    "ModelNotReady",
    "PayloadTooLarge",
    "QueueFull",
    "Unsupported",
    "VersionRefused",
]


class BackendError(ModelgateError):
    """Base of every error the worker answers."""


class InvalidRequest(BackendError):
    """The inference request is malformed (JSON, framing, parameters)."""

    status_code = 400


class InvalidTensor(InvalidRequest):
    """A tensor does not match its declaration or the model's signature."""


class PayloadTooLarge(BackendError):
    status_code = 413

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request body of {size} bytes is larger than the limit of {limit} bytes")


class InflatedTooLarge(PayloadTooLarge):
    """A compressed body that inflates past the body limit (its full size is never known)."""

    def __init__(self, encoding: str, limit: int) -> None:
        BackendError.__init__(
            self, f"the {encoding} request body inflates to more than the limit of {limit} bytes"
        )


class Unsupported(InvalidRequest):
    """A protocol feature the worker does not implement (e.g. Triton's classification).

    NOTE: 400, not Triton's 501: it is the request that asks for something unsupported,
    and bad input never answers 5xx.
    """


class VersionRefused(InvalidRequest):
    """A version the worker will not choose for the client: a range, an alias, ``stable``,
    a version it has not loaded, a path and a header that disagree, or no version when
    only prereleases are loaded.

    NOTE: a worker serves exact versions only; resolving references is the gateway's job,
    and guessing here served ``>=1.0.0 <1.1.0`` with a 2.0.0 prerelease.
    """


class ControlUnauthorized(BackendError):
    """A repository control call without ``Authorization: Bearer <control token>``."""

    status_code = 401
    headers = {"WWW-Authenticate": 'Bearer realm="modelgate-worker-control"'}

    def __init__(self) -> None:
        super().__init__(
            "repository control needs the worker's control token: "
            "send Authorization: Bearer <MODELGATE_WORKER_CONTROL_TOKEN>"
        )


class ControlForbidden(BackendError):
    """A repository control call with a token that is not the worker's control token."""

    status_code = 403

    def __init__(self) -> None:
        super().__init__("the bearer token is not this worker's control token")


class ControlDisabled(BackendError):
    """A repository control call on a worker that was given no control token."""

    status_code = 403

    def __init__(self) -> None:
        super().__init__(
            "repository control (load/unload) is disabled on this worker: start it with "
            "MODELGATE_WORKER_CONTROL_TOKEN set and send that token as a bearer token "
            "(or MODELGATE_WORKER_CONTROL=open on a trusted network)"
        )


def _loaded_listing(loaded: Iterable[str]) -> str:
    shown = sorted(loaded)
    return "loaded: " + ", ".join(shown) if shown else "nothing is loaded"


class ModelNotLoaded(BackendError):
    """The model, or that version of it, is not loaded on this worker."""

    status_code = 404

    def __init__(self, model: str, version: str | None, loaded: Iterable[str] = ()) -> None:
        what = f'model "{model}"' if version is None else f'version "{version}" of "{model}"'
        super().__init__(f"{what} is not loaded on this worker ({_loaded_listing(loaded)})")


class ModelNotReady(BackendError):
    """Loaded but not warm yet, or being unloaded."""

    status_code = 503
    headers = {"Retry-After": "1"}

    def __init__(self, model: str, version: str, state: str) -> None:
        super().__init__(f'version "{version}" of "{model}" is not ready (it is {state})')


class QueueFull(BackendError):
    """The version's batching queue is at its bound; the client should retry later."""

    status_code = 503
    headers = {"Retry-After": "1"}

    def __init__(self, model: str, version: str, limit: int) -> None:
        super().__init__(
            f'queue of "{model}" {version} is full ({limit} requests waiting); retry later'
        )


class Draining(BackendError):
    """The worker is shutting down: in-flight requests finish, new ones are refused."""

    status_code = 503
    headers = {"Retry-After": "1", "Connection": "close"}

    def __init__(self) -> None:
        super().__init__("worker is draining and accepts no new requests; retry on another")


class InferenceFailed(BackendError):
    """ONNX Runtime failed while running a model (an onnxruntime exception, translated)."""

    status_code = 500


class InjectedFault(BackendError):
    """A failure injected on purpose (fault-injection option or version label)."""

    status_code = 500

    def __init__(self, model: str, version: str) -> None:
        super().__init__(f'injected fault for "{model}" {version}')


class LoadFailed(BackendError):
    """A model version could not be loaded (bad artifact, unsupported model, warm-up failed)."""

    status_code = 400
