"""``/admin/v1/models/{model}/versions``: publish, list, read, deprecate/yank, priority."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from modelgate.core.errors import BodyTooLarge
from registry.api._publish_doc import PUBLISH_BODY
from registry.api._upload import upload_form
from registry.api.deps import ETAG, actor, raises, registry_of, with_etag
from registry.api.models import Limit, Offset
from registry.constraints import InvalidConstraint
from registry.errors import (
    ArtifactError,
    ArtifactTooLarge,
    BadRequest,
    Conflict,
    ModelNotFound,
    StorageFull,
    StorageUnavailable,
    VersionConflict,
    VersionNotFound,
)
from registry.publishing import Publisher
from registry.schemas import (
    Page,
    PublishByUri,
    PublishExternal,
    UploadFields,
    VersionOut,
    VersionPatch,
)

__all__ = ["VersionController"]

IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        required=False,
        description="The ETag last read; a stale one is refused with 412.",
    ),
]
PUBLISH_DOC = """Publish a version. Either `multipart/form-data` with `file` (the ONNX model),
`version`, and optional `priority`, `labels` (a JSON object) and `description`; or JSON
`{version, artifact_uri, sha256, priority?, labels?, description?}` (file:// under the
configured import roots, or http(s):// from allowed hosts). The sha256 is computed (upload)
or verified (URI). JSON `{version, runtime: "external", priority?, labels?, description?}`
publishes a version with no artifact, served by external OIP servers (`POST
/admin/v1/workers`). 201 with the version; 409 if it exists; 413 if the artifact is too large;
507 when the artifact store has no space, 503 when it cannot be written."""


def _form_int(value: Any, name: str) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise BadRequest(f'form field "{name}" must be an integer, got {value!r}') from None
    if not 0 <= number <= 1_000_000:
        raise BadRequest(f'form field "{name}" must be between 0 and 1000000, got {number}')
    return number


def _form_labels(value: Any) -> dict[str, str]:
    try:
        return msgspec.json.decode(str(value), type=dict[str, str])
    except msgspec.DecodeError as exc:
        raise BadRequest(f'form field "labels" must be a JSON object of strings: {exc}') from None


class _Runtime(msgspec.Struct):
    runtime: str | None = None


def _json_publish(raw: bytes) -> PublishByUri | PublishExternal:
    """A JSON publish: ``runtime: "external"`` (no artifact), or an ONNX model by URI."""
    runtime = msgspec.json.decode(raw, type=_Runtime).runtime
    if runtime == "external":
        return msgspec.json.decode(raw, type=PublishExternal, strict=True)
    if runtime is not None:
        raise BadRequest(
            f'unknown runtime "{runtime}": send "external" for a version served by external '
            f"OIP servers (no artifact), or no runtime with artifact_uri and sha256"
        )
    return msgspec.json.decode(raw, type=PublishByUri, strict=True)


def _form_fields(**fields: Any) -> UploadFields:
    """The form's fields held to the bounds a JSON publish is held to."""
    try:
        return msgspec.convert(fields, UploadFields)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid form field: {exc}") from None


class VersionController(Controller):
    path = "/models/{model:str}/versions"
    tags = ["versions"]
    #: Every route here names a model.
    opt = raises(ModelNotFound)

    @post(
        "/",
        status_code=201,
        opt={
            "scope": "publish",
            "request_body": PUBLISH_BODY,
            **raises(
                ArtifactError,
                ModelNotFound,
                VersionConflict,
                ArtifactTooLarge,
                BodyTooLarge,
                StorageUnavailable,
                StorageFull,
            ),
        },
        description=PUBLISH_DOC,
        response_headers=ETAG,
    )
    async def publish(
        self, request: Request[Any, Any, Any], model: FromPath[str]
    ) -> Response[VersionOut]:
        registry = registry_of(request)
        publisher = Publisher(registry.settings, registry.store, registry.catalog)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            data = _json_publish(await request.body())
            if isinstance(data, PublishExternal):
                out = await publisher.external(actor(request), model, data)
            else:
                out = await publisher.from_uri(actor(request), model, data)
        elif kind == "multipart/form-data":
            out = await self._upload(request, publisher, model)
        else:
            raise BadRequest(
                f'unsupported Content-Type "{kind or "(none)"}": send multipart/form-data with a '
                f"file, or application/json with artifact_uri and sha256"
            )
        return with_etag(out, out.etag, 201)

    async def _upload(
        self, request: Request[Any, Any, Any], publisher: Publisher, model: FromPath[str]
    ) -> VersionOut:
        async def fail_fast(fields: dict[str, str]) -> None:
            if fields.get("version", "").strip():
                await publisher.precheck(
                    model, _form_fields(version=fields["version"].strip()).version
                )

        limit = request.route_handler.resolve_request_max_body_size()
        async with upload_form(
            request,
            publisher.store,
            file_limit=publisher.settings.max_artifact_bytes,
            body_limit=limit or publisher.settings.max_artifact_bytes,
            rate=publisher.settings.upload_rate_mib_s * 1024 * 1024,
            before_file=fail_fast,
        ) as form:
            if form.staged is None:
                raise BadRequest('multipart publish needs a "file" part with the ONNX model')
            version = form.fields.get("version", "").strip()
            if not version:
                raise BadRequest('multipart publish needs a "version" field, e.g. 1.2.0')
            fields = _form_fields(
                version=version,
                filename=form.filename or "model.onnx",
                priority=_form_int(form.fields.get("priority", 0), "priority"),
                labels=_form_labels(form.fields["labels"]) if "labels" in form.fields else {},
                description=form.fields.get("description", ""),
            )
            return await publisher.publish_staged(
                actor(request),
                model,
                fields.version,
                form.staged,
                uri=f"upload:{fields.filename}",
                priority=fields.priority,
                labels=fields.labels,
                description=fields.description,
            )

    @get("/", opt=raises(ModelNotFound, InvalidConstraint))
    async def index(
        self,
        request: Request[Any, Any, Any],
        model: FromPath[str],
        status: Annotated[
            str | None, QueryParameter(pattern="^(active|deprecated|yanked)$")
        ] = None,
        constraint: Annotated[str | None, QueryParameter(max_length=256)] = None,
        include_prerelease: FromQuery[bool] = False,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> Page:
        return await registry_of(request).catalog.list_versions(
            model,
            status=status,
            constraint=constraint,
            include_prerelease=include_prerelease,
            offset=offset,
            limit=limit,
        )

    @get("/{version:str}", opt=raises(VersionNotFound), response_headers=ETAG)
    async def show(
        self, request: Request[Any, Any, Any], model: FromPath[str], version: FromPath[str]
    ) -> Response[VersionOut]:
        out = await registry_of(request).catalog.get_version(model, version)
        return with_etag(out, out.etag)

    @patch(
        "/{version:str}",
        opt={"scope": "publish", **raises(VersionNotFound, Conflict, body=True, if_match=True)},
        response_headers=ETAG,
    )
    async def update(
        self,
        request: Request[Any, Any, Any],
        model: FromPath[str],
        version: FromPath[str],
        data: JSONBody[VersionPatch],
        if_match: IfMatch = None,
        force: FromQuery[bool] = False,
    ) -> Response[VersionOut]:
        """409 when deprecating or yanking a policy arm or a rollout's version, unless
        ``?force=true``."""
        out = await registry_of(request).catalog.patch_version(
            actor(request), model, version, data, if_match, force=force
        )
        return with_etag(out, out.etag)
