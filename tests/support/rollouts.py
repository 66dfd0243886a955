"""Rollout set-up the e2e tests share on a live `Fleet`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.support.fleet import Fleet

ACTIVE = ("waiting", "running", "paused")


@contextmanager
def on_baseline(fleet: Fleet, model: str, version: str = "1.0.0") -> Iterator[httpx.Client]:
    """``version`` takes all of ``model``'s traffic, under the alias ``prod``, once the
    gateway has synced; yields an admin client. On exit no rollout of ``model`` is left
    active (one a failed test left is aborted)."""
    with fleet.admin() as client:
        put = client.put(
            f"/admin/v1/models/{model}/traffic",
            json={"arms": [{"version": version, "weight": 100}]},
        )
        assert put.status_code == 200, put.text
        alias = client.put(f"/admin/v1/models/{model}/aliases/prod", json={"version": version})
        assert alias.status_code in (200, 201), alias.text
        fleet.wait_registry_synced()
        try:
            yield client
        finally:
            # NOTE: a client of its own: the test may have restarted the gateway.
            with fleet.admin() as after:
                for rollout in after.get(f"/admin/v1/models/{model}/rollouts").json():
                    if rollout["state"] in ACTIVE:
                        after.post(f"/admin/v1/models/{model}/rollouts/{rollout['id']}/abort")
