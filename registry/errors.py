"""Errors of the registry. Each carries the HTTP status it maps to; `modelgate.core.rendering`
renders every one as ``{"error": "..."}``.

::

    ModelgateError (modelgate.core.errors)
    └── RegistryError
        ├── BadRequest              400
        │   ├── InvalidInput            a field over its bound (registry.limits): NUL, length, int64
        │   ├── ArtifactError           the artifact could not be read, fetched or understood
        │   │   └── ChecksumMismatch
        │   ├── InvalidServerUrl        an external server's URL the gateway cannot use
        │   ├── InvalidConstraint       (registry.constraints)
        │   └── InvalidVersion          (registry.constraints)
        ├── AuthError               401
        │   ├── Unauthorized        401 with WWW-Authenticate
        │   └── Forbidden           403
        ├── NotFound                404
        │   ├── ModelNotFound, VersionNotFound, AliasNotFound, RolloutNotFound
        │   ├── ServerNotFound      no external server registered under that id
        │   └── NoVersionSatisfies
        ├── Conflict                409
        │   ├── VersionConflict
        │   └── RolloutLeaseLost    a gateway's lease or expected step no longer holds
        ├── PreconditionFailed      412 (stale If-Match)
        ├── ArtifactTooLarge        413
        ├── NoReadyVersion          503 (no arm of the policy has a ready worker)
        ├── DatabaseUnavailable     503 refused, timed out, connection lost, not migrated
        │   └── DatabaseBusy        503 Retry-After 1: a deadlock or serialization failure
        ├── InvalidDatabaseUrl      (configuration) MODELGATE_DATABASE_URL cannot be used
        └── StorageError            the artifact store's filesystem failed (`storage_error`)
            ├── StorageUnavailable  503 with Retry-After (read-only, permission, I/O error)
            └── StorageFull         507 (no space or quota left)
"""

from __future__ import annotations

import errno
import json
import os
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
    "DatabaseBusy",
    "DatabaseUnavailable",
    "Forbidden",
    "InvalidDatabaseUrl",
    "InvalidInput",
    "InvalidServerUrl",
    "ModelNotFound",
    "NoReadyVersion",
    "NoVersionSatisfies",
    "NotFound",
    "PreconditionFailed",
    "RegistryError",
    "RolloutLeaseLost",
    "RolloutNotFound",
    "ServerNotFound",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "Unauthorized",
    "VersionConflict",
    "VersionNotFound",
    "storage_error",
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


def _shown(value: object, limit: int = 48) -> str:
    """``value`` quoted for an error message: JSON-escaped (a NUL shows as ``\\u0000``),
    cut to ``limit`` characters with its full length said."""
    text = str(value)
    if len(text) > limit:
        return json.dumps(text[:limit]) + f"… ({len(text)} characters)"
    return json.dumps(text)


class InvalidInput(BadRequest):
    """An input that PostgreSQL or a column would refuse (see `registry.limits`)."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        super().__init__(f"invalid {field} {_shown(value)}: {reason}")
        self.field = field
        self.reason = reason


class InvalidServerUrl(BadRequest):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"invalid url {_shown(url)}: {reason}")


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


class ServerNotFound(NotFound):
    def __init__(self, server_id: str, registered: Iterable[str], why: str = "") -> None:
        names = ", ".join(sorted(registered)) or "none"
        super().__init__(
            f'no external server "{server_id}" is registered{why} (registered: {names})'
        )


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


REACH_IT = "check that it is running and reachable (MODELGATE_DATABASE_URL)"
MIGRATE_IT = "run `modelgate db upgrade`"


class DatabaseUnavailable(RegistryError):
    """The database cannot be used now: refused, timed out, the connection was lost, its
    schema is missing, or (`DatabaseBusy`) a concurrent change won and this one was rolled
    back. Raised by `registry.db.unavailable`, the one translation."""

    status_code = 503
    headers = {"Retry-After": "5"}

    def __init__(self, database: str, reason: str, fix: str = REACH_IT) -> None:
        super().__init__(f"database unavailable: {database}: {reason}; {fix}")
        self.database = database
        self.reason = reason
        self.fix = fix


RETRY_IT = "nothing was changed; retry"


class DatabaseBusy(DatabaseUnavailable):
    """A transaction lost a race with a concurrent one and PostgreSQL rolled it back
    (SQLSTATE 40P01 deadlock_detected, 40001 serialization_failure): nothing was changed,
    and the same request, retried, succeeds. 503 with a short Retry-After; raised by
    `registry.db.unavailable`."""

    headers = {"Retry-After": "1"}

    def __init__(self, database: str, reason: str) -> None:
        RegistryError.__init__(
            self, f"the registry was busy with a concurrent change ({reason}); {RETRY_IT}"
        )
        self.database = database
        self.reason = reason
        self.fix = RETRY_IT


class InvalidDatabaseUrl(RegistryError):
    """``MODELGATE_DATABASE_URL`` names no database modelgate can use."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"invalid database URL {url}: {reason}; use sqlite:///path/to/registry.db or "
            f"postgresql://user@host:5432/name (postgres:// and the +aiosqlite/+asyncpg "
            f"forms work too)"
        )


# -- storage: the artifact store's filesystem --------------------------------------------


class StorageError(RegistryError):
    """The artifact store's filesystem refused an operation; never the client's fault."""

    status_code = 503


class StorageUnavailable(StorageError):
    """The store cannot be written now (read-only, permissions, I/O); retrying may help."""

    status_code = 503
    headers = {"Retry-After": "30"}


class StorageFull(StorageError):
    """No space (or quota) is left for the artifact."""

    status_code = 507


#: errno values that mean "out of space" (507); every other OSError is "unavailable" (503).
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def storage_error(exc: OSError, root: object) -> StorageError:
    """The one translation of a filesystem error in the artifact store at ``root``:
    ENOSPC/EDQUOT/EFBIG → 507, anything else (EROFS, EACCES, EIO, …) → 503."""
    reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
    if exc.errno in _NO_SPACE:
        return StorageFull(f"no space for the artifact in the artifact store {root}: {reason}")
    return StorageUnavailable(f"the artifact store {root} is unavailable: {reason}")
