"""The dashboard's state document (``GET /ui/api/state``): the fleet as this gateway replica
sees it, built from what it holds in memory plus the registry's cached details.

* ``gateway``: version, ``replica`` (this replica's name, as its rollout leases name it:
  behind a load balancer each poll may be answered by another replica, whose memory this
  is), registry revision, degraded sources;
* ``summary``: counts for the header (models, workers ready / ejected, active rollouts);
* ``models``: versions (status, aliases, who published when, ready workers), the configured
  split against the one observed over the last minute (`gateway.dashboard.sampler`);
* ``workers``: `gateway.dashboard.fleet.worker_rows`;
* ``rollouts``: each model's latest rollout with its judgements in brief
  (`brief_history`: the pass and fail verdicts, and per step the count of ``wait`` verdicts
  with the latest one, so the document's size does not grow with a rollout's age), plus,
  for a running one, the candidate's and the baseline's figures in the current step, over its
  last minute at most (the rollout gates' own counters, `gateway.control.rollout_stats`).

Reading it costs no work on the request path: the split comes from the sampler's ring,
workers from the balancer's snapshot, details from `RegistryReads`' cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.control.discovery import WorkerDirectory
from gateway.control.health import Health
from gateway.control.rollout_stats import OutcomeCounters
from gateway.dashboard.fleet import worker_rows
from gateway.dashboard.registry_reads import RegistryFigures, RegistryReads
from gateway.dashboard.sampler import Observed, SplitSampler
from gateway.routing import RoutingTable
from registry.models import ACTIVE_ROLLOUT_STATES
from registry.resolution import ModelView
from registry.tokens import Principal

__all__ = [
    "DashboardState",
    "brief_history",
    "configured_split",
    "live_figures",
    "version_rows",
]

log = logging.getLogger("modelgate.gateway.dashboard")

#: The longest span of the live rollout figures (the observed split's is the sampler's).
LIVE_WINDOW_S = 60.0
#: The pass and fail verdicts kept per rollout (one per step at most, unless resumed).
MAX_JUDGEMENTS = 50
ACTIVE_STATES = frozenset(str(s) for s in ACTIVE_ROLLOUT_STATES)


def configured_split(view: ModelView, has_ready: Callable[[str], bool]) -> dict[str, Any] | None:
    """The policy's arms with their weights and shares in percent (None without a policy);
    ``ready`` says whether an arm has a ready worker (an arm without one gets no traffic,
    its weight spread over the others)."""
    policy = view.policy
    if policy is None:
        return None
    total = sum(arm.weight for arm in policy.arms)
    return {
        "arms": [
            {
                "version": arm.version,
                "weight": arm.weight,
                "share": round(100.0 * arm.weight / total, 2) if total else 0.0,
                "ready": has_ready(arm.version),
            }
            for arm in policy.arms
        ],
        "sticky_header": policy.sticky_header,
        "shadow": (
            None
            if policy.shadow is None
            else {"version": policy.shadow.version, "fraction": policy.shadow.fraction}
        ),
    }


def version_rows(
    view: ModelView,
    details: Mapping[str, Mapping[str, Any]],
    serving: Callable[[str], int],
) -> list[dict[str, Any]]:
    """The model's versions, highest first: status (``active``, ``deprecated``, ``yanked``,
    the admin API's and the CLI's words), the aliases on each, how many workers have it
    ready, and when and by whom it was published (from the registry's details, when read)."""
    on: dict[str, list[str]] = {}
    for alias, version in sorted(view.aliases.items()):
        on.setdefault(version, []).append(alias)
    rows = []
    for info in view.versions:
        detail = details.get(info.version, {})
        rows.append(
            {
                "version": info.version,
                "status": str(info.status),
                "prerelease": bool(info.parsed.prerelease),
                "aliases": on.get(info.version, []),
                "ready_workers": serving(info.version),
                "published_at": detail.get("created_at"),
                "published_by": detail.get("created_by"),
                "updated_at": detail.get("updated_at"),
                "runtime": detail.get("runtime"),
                "size_bytes": detail.get("size_bytes"),
            }
        )
    return rows


def _alias_rows(view: ModelView, details: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for alias, version in sorted(view.aliases.items()):
        detail = details.get(alias, {})
        rows.append(
            {
                "alias": alias,
                "version": version,
                "etag": detail.get("etag"),
                "updated_at": detail.get("updated_at"),
                "updated_by": detail.get("updated_by"),
                "history": list(detail.get("history", []))[:10],  # newest first
            }
        )
    return rows


def brief_history(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A rollout's history (oldest first) in a bounded size, whatever its length:
    ``judgements``, the pass and fail verdicts (the last `MAX_JUDGEMENTS`), and ``waits``,
    per step that had any, how many ``wait`` verdicts it had and the latest one."""
    judgements: list[dict[str, Any]] = []
    waits: dict[int, dict[str, Any]] = {}
    for entry in history:
        if entry.get("verdict") == "wait":
            step = int(entry["step"])
            seen = waits.setdefault(step, {"step": step, "weight": entry["weight"], "count": 0})
            seen["count"] += 1
            seen["latest"] = dict(entry)
        else:
            judgements.append(dict(entry))
    return {
        "judgements": judgements[-MAX_JUDGEMENTS:],
        "waits": [waits[step] for step in sorted(waits)],
    }


async def live_figures(
    counters: OutcomeCounters, rollout: Mapping[str, Any], now: float
) -> dict[str, Any] | None:
    """A running rollout's candidate and baseline attempts in its current step, over the
    step's last minute at most (the gates' own counters), or None when they cannot be read
    (Redis down: the health header says so)."""
    since = now - LIVE_WINDOW_S
    if rollout.get("step_started_at"):
        started = datetime.fromisoformat(str(rollout["step_started_at"]))
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        since = max(since, started.timestamp())
    model = str(rollout["model"])
    try:
        candidate = await counters.window(model, rollout["version"], since, now)
        baseline = await counters.window(model, rollout["baseline"], since, now)
    except Exception as exc:
        # NOTE: whatever the counters' Redis raises; the controller reports it degraded.
        log.debug("dashboard: cannot read the rollout counters: %s", exc)
        return None
    return {
        "window_s": round(max(0.0, now - since), 1),
        "at": datetime.fromtimestamp(now, UTC).isoformat(),
        "candidate": candidate.as_dict(),
        "baseline": baseline.as_dict(),
    }


@dataclass
class DashboardState:
    """Builds the state document; one per gateway app (see the module docstring)."""

    table: RoutingTable
    directory: WorkerDirectory
    health: Health
    sampler: SplitSampler
    counters: OutcomeCounters
    reads: RegistryReads
    version: str
    #: This replica's name (``host:pid:nonce``), the holder of the rollout leases it takes.
    replica: str = ""
    wall: Callable[[], float] = time.time

    async def build(self, principal: Principal) -> dict[str, Any]:
        snapshot = self.table.snapshot
        views = dict(snapshot.models) if snapshot is not None else {}
        revision = snapshot.revision if snapshot is not None else -1
        active = snapshot.rollouts.keys() if snapshot is not None else ()
        figures = await self.reads.read(
            revision,
            [(name, sorted(view.aliases)) for name, view in sorted(views.items())],
            active,
        )
        observed = self.sampler.observed()
        models = [self._model(view, figures, observed.get(name)) for name, view in views.items()]
        models.sort(key=lambda m: m["name"])
        balancer = self.table.balancer
        workers = worker_rows(
            balancer.snapshot(),
            balancer.ejections(),
            balancer.rules,
            self.directory.announcements,
            self.table.workers,
        )
        rollouts = await self._rollouts(figures)
        problems = dict(self.health.problems)
        if figures.problem is not None:
            problems.setdefault("dashboard", figures.problem)
        return {
            "generated_at": datetime.fromtimestamp(self.wall(), UTC).isoformat(),
            "gateway": {
                "version": self.version,
                "replica": self.replica,
                "revision": revision,
                "registry_loaded": snapshot is not None,
                "degraded": bool(self.health.problems),
                "problems": problems,
            },
            "principal": {
                "name": principal.name,
                "scopes": sorted(principal.scopes),
                "can_act": principal.allows("publish"),
            },
            "summary": {
                "models": len(models),
                "versions": sum(len(m["versions"]) for m in models),
                "workers": len(workers),
                "ready_workers": sum(1 for w in workers if w["status"] in ("ready", "degraded")),
                "ejected_workers": sum(1 for w in workers if w["status"] == "ejected"),
                "active_rollouts": sum(1 for r in rollouts if r["active"]),
                "requests_last_minute": sum(m["observed"]["requests"] for m in models),
            },
            "models": models,
            "workers": workers,
            "rollouts": rollouts,
        }

    def _model(
        self, view: ModelView, figures: RegistryFigures, observed: Observed | None
    ) -> dict[str, Any]:
        name = view.name
        balancer = self.table.balancer
        seen = observed or Observed(self.sampler.span_s())
        return {
            "name": name,
            "versions": version_rows(
                view,
                figures.versions.get(name, {}),
                lambda v: len(balancer.serving(name, v)),
            ),
            "aliases": _alias_rows(view, figures.aliases.get(name, {})),
            "configured": configured_split(view, lambda v: balancer.has_ready(name, v)),
            "observed": seen.as_dict(),
        }

    async def _rollouts(self, figures: RegistryFigures) -> list[dict[str, Any]]:
        """Each model's newest rollout, with the ones before it in brief (``previous``)."""
        rows = []
        for _, found in sorted(figures.rollouts.items()):
            if not found:
                continue
            newest, *older = found
            active = newest["state"] in ACTIVE_STATES
            row = {k: v for k, v in newest.items() if k != "history"}
            row.update(brief_history(newest["history"]), active=active, live=None)
            row["previous"] = [
                {k: r[k] for k in ("id", "version", "state", "reason", "updated_at")} for r in older
            ]
            if newest["state"] == "running":
                row["live"] = await live_figures(self.counters, newest, self.wall())
            rows.append(row)
        rows.sort(key=lambda r: (not r["active"], r["model"]))
        return rows
