"""Aliases (moved atomically, history kept), traffic policies (replaced whole), and explain."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from registry._base import ServiceBase, check_if_match, etag
from registry._policy_writes import move_alias, policy_doc
from registry._serving import mark_arms, not_serving_note
from registry.catalog import CatalogService
from registry.constraints import InvalidConstraint, parse_constraint
from registry.errors import AliasNotFound, BadRequest, NoReadyVersion, NotFound, VersionNotFound
from registry.models import Alias, AliasHistory, Model, ModelVersion, TrafficPolicy, VersionStatus
from registry.resolution import (
    ALIAS_PATTERN,
    RESERVED,
    resolve,
)
from registry.schemas import AliasOut, ResolveOut, TrafficIn, TrafficOut
from registry.traffic import choose

__all__ = ["LiveView", "PolicyService"]


class LiveView(Protocol):
    """What a running gateway adds to admin answers: balancer health and worker choice."""

    def worker_health(self) -> dict[str, dict[str, Any]]: ...

    def has_ready(self, model: str, version: str) -> bool: ...

    def explain_worker(self, model: str, version: str) -> tuple[str | None, list[str]]: ...


def _traffic_out(
    model: str,
    row: TrafficPolicy,
    status_of: dict[str, str],
    live: LiveView | None,
) -> TrafficOut:
    ready = (lambda v: live.has_ready(model, v)) if live is not None else None
    return TrafficOut(
        model=model,
        arms=mark_arms(row.arms, status_of, ready),
        sticky_header=row.sticky_header,
        shadow=row.shadow,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        etag=etag("t", row.id, row.row_version),
    )


def check_alias_name(alias: str) -> None:
    if not ALIAS_PATTERN.match(alias) or alias in RESERVED:
        raise BadRequest(
            f'invalid alias "{alias}": use 1-64 lower-case letters, digits, "_" or "-", starting '
            f'with a letter, and not "latest" or "stable"'
        )
    try:
        parse_constraint(alias)
    except InvalidConstraint:
        return
    raise BadRequest(f'invalid alias "{alias}": it would be read as a version constraint')


class PolicyService(ServiceBase):
    """What serves: aliases, the traffic policy, and the explanation of a resolution."""

    async def _servable(self, session: AsyncSession, model: Model, version: str) -> ModelVersion:
        row = await self.version_row(session, model, version)
        if row.status == VersionStatus.YANKED:
            raise VersionNotFound(model.name, row.version, reason="is yanked and cannot serve")
        return row

    async def _alias_out(self, session: AsyncSession, model: Model, alias: Alias) -> AliasOut:
        target = await session.get(ModelVersion, alias.version_id)
        history = (
            await session.execute(
                select(AliasHistory)
                .where(AliasHistory.model_id == model.id, AliasHistory.alias == alias.name)
                .order_by(AliasHistory.id.desc())
                .limit(50)
            )
        ).scalars()
        return AliasOut(
            model=model.name,
            alias=alias.name,
            version=target.version if target else "",
            updated_at=alias.updated_at,
            updated_by=alias.updated_by,
            etag=etag("a", alias.id, alias.row_version),
            history=[
                {
                    "from": h.from_version,
                    "to": h.to_version,
                    "at": h.changed_at.isoformat(),
                    "by": h.changed_by,
                }
                for h in history
            ],
        )

    async def list_aliases(self, model: str) -> list[AliasOut]:
        """``model``'s aliases by name, each with its version, ETag and history."""
        async with self.read() as session:
            owner = await self.model_row(session, model)
            rows = (
                await session.execute(
                    select(Alias).where(Alias.model_id == owner.id).order_by(Alias.name)
                )
            ).scalars()
            return [await self._alias_out(session, owner, row) for row in rows]

    async def get_alias(self, model: str, alias: str) -> AliasOut:
        async with self.read() as session:
            owner = await self.model_row(session, model)
            row = await session.scalar(
                select(Alias).where(Alias.model_id == owner.id, Alias.name == alias)
            )
            if row is None:
                raise AliasNotFound(model, alias)
            return await self._alias_out(session, owner, row)

    async def set_alias(
        self, actor: str, model: str, alias: str, version: str, if_match: str | None
    ) -> tuple[AliasOut, bool]:
        """Point ``alias`` at ``version``; returns the alias and whether it was created."""
        check_alias_name(alias)
        async with self.write() as session:
            owner = await self.model_row(session, model, lock=True)
            target = await self._servable(session, owner, version)
            row = await session.scalar(
                select(Alias).where(Alias.model_id == owner.id, Alias.name == alias)
            )
            created = row is None
            if row is None:
                if if_match not in (None, "*"):
                    raise AliasNotFound(model, alias)
            else:
                check_if_match(if_match, etag("a", row.id, row.row_version))
            row, before = await move_alias(session, owner, alias, target, actor, self.clock(), row)
            await self.record(
                session,
                actor=actor,
                action="alias.set",
                model=model,
                target=f"{model}:{alias}",
                before=None if before is None else {"version": before},
                after={"version": target.version},
            )
            return await self._alias_out(session, owner, row), created

    async def delete_alias(self, actor: str, model: str, alias: str, if_match: str | None) -> None:
        async with self.write() as session:
            owner = await self.model_row(session, model, lock=True)
            row = await session.scalar(
                select(Alias).where(Alias.model_id == owner.id, Alias.name == alias)
            )
            if row is None:
                raise AliasNotFound(model, alias)
            check_if_match(if_match, etag("a", row.id, row.row_version))
            previous = await session.get(ModelVersion, row.version_id)
            before = previous.version if previous else None
            await session.delete(row)
            session.add(
                AliasHistory(
                    model_id=owner.id,
                    alias=alias,
                    from_version=before,
                    to_version=None,
                    changed_at=self.clock(),
                    changed_by=actor,
                )
            )
            await self.record(
                session,
                actor=actor,
                action="alias.delete",
                model=model,
                target=f"{model}:{alias}",
                before={"version": before},
                after=None,
            )

    async def _statuses(self, session: AsyncSession, owner: Model) -> dict[str, str]:
        rows = await session.execute(
            select(ModelVersion.version, ModelVersion.status).where(
                ModelVersion.model_id == owner.id
            )
        )
        return {version: status for version, status in rows.all()}

    async def get_traffic(self, model: str, live: LiveView | None = None) -> TrafficOut:
        """The policy; each arm says whether it serves now (``serving``) and if not why
        (``reason``: yanked, no ready worker — the latter known on a gateway, ``live``)."""
        async with self.read() as session:
            owner = await self.model_row(session, model)
            row = await session.scalar(
                select(TrafficPolicy).where(TrafficPolicy.model_id == owner.id)
            )
            if row is None:
                raise NotFound(f'model "{model}" has no traffic policy')
            return _traffic_out(model, row, await self._statuses(session, owner), live)

    async def put_traffic(
        self,
        actor: str,
        model: str,
        data: TrafficIn,
        if_match: str | None,
        live: LiveView | None = None,
    ) -> TrafficOut:
        """Replace the whole policy; every arm and the shadow must name a servable version."""
        seen: set[str] = set()
        for arm in data.arms:
            if arm.version in seen:
                raise BadRequest(f'version "{arm.version}" appears in more than one arm')
            seen.add(arm.version)
        if sum(a.weight for a in data.arms) <= 0:
            raise BadRequest("the arms' weights add up to 0; at least one arm needs weight > 0")
        async with self.write() as session:
            owner = await self.model_row(session, model, lock=True)
            arms = [
                {
                    "version": (await self._servable(session, owner, a.version)).version,
                    "weight": a.weight,
                }
                for a in data.arms
            ]
            shadow = None
            if data.shadow is not None:
                target = await self._servable(session, owner, data.shadow.version)
                shadow = {"version": target.version, "fraction": data.shadow.fraction}
            row = await session.scalar(
                select(TrafficPolicy).where(TrafficPolicy.model_id == owner.id)
            )
            before = policy_doc(row)
            now = self.clock()
            if row is None:
                if if_match not in (None, "*"):
                    raise NotFound(f'model "{model}" has no traffic policy')
                row = TrafficPolicy(
                    model_id=owner.id,
                    arms=arms,
                    sticky_header=data.sticky_header,
                    shadow=shadow,
                    updated_at=now,
                    updated_by=actor,
                )
                session.add(row)
            else:
                check_if_match(if_match, etag("t", row.id, row.row_version))
                row.arms, row.sticky_header, row.shadow = arms, data.sticky_header, shadow
                row.updated_at, row.updated_by = now, actor
                row.row_version += 1
            await session.flush()
            await self.record(
                session,
                actor=actor,
                action="traffic.set",
                model=model,
                target=model,
                before=before,
                after=policy_doc(row),
            )
            return _traffic_out(model, row, await self._statuses(session, owner), live)

    async def delete_traffic(self, actor: str, model: str, if_match: str | None) -> None:
        async with self.write() as session:
            owner = await self.model_row(session, model, lock=True)
            row = await session.scalar(
                select(TrafficPolicy).where(TrafficPolicy.model_id == owner.id)
            )
            if row is None:
                raise NotFound(f'model "{model}" has no traffic policy')
            check_if_match(if_match, etag("t", row.id, row.row_version))
            before = policy_doc(row)
            await session.execute(delete(TrafficPolicy).where(TrafficPolicy.id == row.id))
            await self.record(
                session,
                actor=actor,
                action="traffic.delete",
                model=model,
                target=model,
                before=before,
                after=None,
            )

    async def explain(
        self,
        catalog: CatalogService,
        model: str,
        reference: str | None,
        key: str | None,
        include_prerelease: bool,
        live: LiveView | None = None,
    ) -> ResolveOut:
        """What would serve ``reference`` for route key ``key``, with the reasoning; on a
        running gateway (``live``) ready-aware and naming the worker the balancer would pick."""
        view = await catalog.view(model)
        resolution = resolve(view, reference, include_prerelease=include_prerelease)
        registry_choice = choose(resolution, view.policy, key)
        choice = registry_choice
        unready_note = None
        passed_over = choice.skipped
        if live is not None:
            try:
                choice = choose(resolution, view.policy, key, lambda v: live.has_ready(model, v))
                passed_over = choice.skipped
            except NoReadyVersion as exc:
                unready_note = f"no ready worker: requests get 503 now ({exc.message})"
                passed_over = tuple(
                    c.version for c in resolution.candidates if not live.has_ready(model, c.version)
                )
        skipped = [f"{version}: no ready worker" for version in passed_over]
        arms = mark_arms(
            [{"version": a.version, "weight": a.weight} for a in view.policy.arms]
            if view.policy is not None
            else [],
            {v.version: v.status for v in view.versions},
            (lambda v: live.has_ready(model, v)) if live is not None else None,
        )
        trace = [
            f"reference {reference or '(none)'!r} is {resolution.kind}"
            + (f" → {resolution.normalized}" if resolution.kind == "constraint" else ""),
            "candidates: " + ", ".join(c.version for c in resolution.candidates),
            "policy: "
            + (
                "none"
                if view.policy is None
                else ", ".join(f"{a.version}={a.weight}" for a in view.policy.arms)
                + not_serving_note(arms)
            ),
            f"registry answer: {registry_choice.version}",
        ]
        if skipped:
            trace.append("skipped: " + "; ".join(skipped))
        trace.append(
            f"route {choice.route} → {choice.version}"
            + (f" (key {key!r})" if key is not None else " (no route key: random by weight)")
        )
        worker = None
        if unready_note is not None:
            trace.append(unready_note)
        elif live is not None:
            worker, lines = live.explain_worker(model, choice.version)
            trace.extend(lines)
        return ResolveOut(
            model=model,
            reference=reference or "",
            kind=resolution.kind,
            version=choice.version,
            candidates=[c.version for c in resolution.candidates],
            arm=choice.route,
            weights=dict(choice.weights),
            worker=worker,
            trace=trace,
            registry_version=registry_choice.version,
            skipped=skipped,
            arms=arms,
        )
