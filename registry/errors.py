"""Errors of the registry. Each carries the HTTP status it maps to; `modelgate.core.rendering`
renders every one as ``{"error": "..."}``.

::

    ModelgateError (modelgate.core.errors)
    └── RegistryError
        ├── BadRequest              400
        │   ├── ArtifactError           the artifact could not be read, fetched or understood
        │   │   └── ChecksumMismatch
        │   ├── InvalidConstraint       (registry.constraints)
        │   └── InvalidVersion          (registry.constraints)
        ├── AuthError               401
        │   ├── Unauthorized        401 with WWW-Authenticate
        │   └── Forbidden           403
        ├── NotFound                404
        │   ├── ModelNotFound, VersionNotFound, AliasNotFound, RolloutNotFound
        │   └── NoVersionSatisfies
        ├── Conflict                409
        │   ├── VersionConflict
        │   └── RolloutLeaseLost    a gateway's lease or expected step no longer holds
        ├── PreconditionFailed      412 (stale If-Match)
        ├── ArtifactTooLarge        413
        └── NoReadyVersion          503 (no arm of the policy has a ready worker)
"""

from __future__ import annotations

from collections.abc import Iterable

from modelgate.core.errors import ModelgateError

__all__ = [
    "AliasNotFound",
    "ArtifactError",
    "ArtifactTooLarge",
    "AuthError",
    "BadRequest",
    "ChecksumMismatch",
    "Conflict",
    "Forbidden",
    "ModelNotFound",
    "NoReadyVersion",
    "NoVersionSatisfies",
    "NotFound",
    "PreconditionFailed",
    "RegistryError",
    "RolloutLeaseLost",
    "RolloutNotFound",
    "Unauthorized",
    "VersionConflict",
    "VersionNotFound",
]


class RegistryError(ModelgateError):
    """An error raised by the registry's rules or services."""


class BadRequest(RegistryError):
    status_code = 400


class NotFound(RegistryError):
    status_code = 404


class Conflict(RegistryError):
    status_code = 409


class PreconditionFailed(RegistryError):
    status_code = 412


class AuthError(RegistryError):
    status_code = 401


class Unauthorized(AuthError):
    status_code = 401
    headers = {"WWW-Authenticate": 'Bearer realm="modelgate"'}


class Forbidden(AuthError):
    status_code = 403


class ArtifactError(BadRequest):
    """The artifact could not be read, fetched or understood."""


class ChecksumMismatch(ArtifactError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch: expected {expected}, artifact has {actual}")


class ArtifactTooLarge(RegistryError):
    status_code = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"artifact is larger than the limit of {limit} bytes")


def _listing(versions: Iterable[str]) -> str:
    shown = list(versions)
    if not shown:
        return "no versions are published"
    if len(shown) > 20:
        return "have " + ", ".join(shown[:20]) + f", … ({len(shown)} in all)"
    return "have " + ", ".join(shown)


class ModelNotFound(NotFound):
    def __init__(self, name: str, close: Iterable[str] = ()) -> None:
        hint = list(close)
        suffix = f" (did you mean {', '.join(repr(c) for c in hint)}?)" if hint else ""
        super().__init__(f'model "{name}" not found{suffix}')
        self.name = name


class VersionNotFound(NotFound):
    def __init__(self, model: str, version: str, reason: str = "is not published") -> None:
        super().__init__(f'version "{version}" of "{model}" {reason}')


class AliasNotFound(NotFound):
    def __init__(self, model: str, alias: str) -> None:
        super().__init__(f'alias "{alias}" of "{model}" not found')


class NoVersionSatisfies(NotFound):
    """Nothing fits; the message lists what exists and which of it is deprecated (those
    serve only an exact pin, so a range or ``stable`` passing over them is no surprise)."""

    def __init__(
        self, model: str, constraint: str, have: Iterable[str], deprecated: Iterable[str] = ()
    ) -> None:
        listing = _listing(have)
        old = list(deprecated)
        if old:
            shown = ", ".join(old[:20]) + (f", … ({len(old)} in all)" if len(old) > 20 else "")
            listing += f"; deprecated, so served only to an exact version: {shown}"
        super().__init__(f'no version of "{model}" satisfies "{constraint}" ({listing})')


class RolloutNotFound(NotFound):
    def __init__(self, model: str, rollout_id: int) -> None:
        super().__init__(f'rollout {rollout_id} of "{model}" not found')


class RolloutLeaseLost(Conflict):
    """A controller call found the rollout no longer driven by its caller: another replica
    holds the lease, the step moved on, or an operator changed the state. The caller stops
    driving it; nothing was changed."""


class VersionConflict(Conflict):
    """A version equal (ignoring build metadata) to an existing one was published."""


class NoReadyVersion(RegistryError):
    """Every version that could serve has no ready worker."""

    status_code = 503
    headers = {"Retry-After": "1"}
