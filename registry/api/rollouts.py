"""``/admin/v1/models/{model}/rollouts``: start, list, read, pause, resume, promote, abort."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter

from registry.api.deps import actor, raises, registry_of
from registry.errors import BadRequest, Conflict, ModelNotFound, RolloutNotFound, VersionNotFound
from registry.schemas import RolloutIn, RolloutOut

__all__ = ["RolloutController"]

#: Row ids are 64-bit; a larger number names no rollout (400, not 500).
RolloutId = Annotated[int, PathParameter(ge=1, le=2**63 - 1, description="the rollout's id")]
#: What pause, resume, promote and abort raise: no such rollout, or not in a state for it.
VERB = {"scope": "publish", **raises(RolloutNotFound, Conflict)}
START_DOC = """Start a rollout of `version`: `steps` are the candidate's weights in percent
(ascending, each in (0, 100]), each held `interval_s` seconds and judged by `gates`;
`baseline` defaults to the policy's highest-weight arm, else the highest stable version;
`alias` is moved to the candidate on promotion. 201 in state `waiting` (until the candidate
has a ready worker); 409 while the model has another active rollout."""


class RolloutController(Controller):
    path = "/models/{model:str}/rollouts"
    tags = ["rollouts"]
    #: Every route here names a model.
    opt = raises(ModelNotFound)

    @post(
        "/",
        status_code=201,
        opt={"scope": "publish", **raises(BadRequest, VersionNotFound, Conflict, body=True)},
        description=START_DOC,
    )
    async def start(
        self, request: Request[Any, Any, Any], model: FromPath[str], data: JSONBody[RolloutIn]
    ) -> Response[RolloutOut]:
        out = await registry_of(request).rollouts.start(actor(request), model, data)
        return Response(out, status_code=201)

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], model: FromPath[str]
    ) -> list[RolloutOut]:
        """The model's rollouts, newest first."""
        return await registry_of(request).rollouts.list(model)

    @get("/{rollout_id:int}", opt=raises(RolloutNotFound))
    async def show(
        self, request: Request[Any, Any, Any], model: FromPath[str], rollout_id: RolloutId
    ) -> RolloutOut:
        return await registry_of(request).rollouts.get(model, rollout_id)

    @post("/{rollout_id:int}/pause", status_code=200, opt=VERB)
    async def pause(
        self, request: Request[Any, Any, Any], model: FromPath[str], rollout_id: RolloutId
    ) -> RolloutOut:
        """Hold the rollout at its current step (weights stay)."""
        return await registry_of(request).rollouts.pause(actor(request), model, rollout_id)

    @post("/{rollout_id:int}/resume", status_code=200, opt=VERB)
    async def resume(
        self, request: Request[Any, Any, Any], model: FromPath[str], rollout_id: RolloutId
    ) -> RolloutOut:
        """Continue a paused rollout; the step's window starts again."""
        return await registry_of(request).rollouts.resume(actor(request), model, rollout_id)

    @post("/{rollout_id:int}/promote", status_code=200, opt=VERB)
    async def promote(
        self,
        request: Request[Any, Any, Any],
        model: FromPath[str],
        rollout_id: RolloutId,
        force: FromQuery[bool] = False,
    ) -> RolloutOut:
        """Skip to 100% now: one arm on the candidate, the alias moved. 409 if the candidate
        has no ready worker on this gateway, unless ``?force=true``."""
        registry = registry_of(request)
        live = None if force else registry.live
        ready = (lambda v: live.has_ready(model, v)) if live is not None else None
        return await registry.rollouts.promote(actor(request), model, rollout_id, ready)

    @post("/{rollout_id:int}/abort", status_code=200, opt=VERB)
    async def abort(
        self, request: Request[Any, Any, Any], model: FromPath[str], rollout_id: RolloutId
    ) -> RolloutOut:
        """Back to the baseline now: one arm on it."""
        return await registry_of(request).rollouts.abort(actor(request), model, rollout_id)
