"""The live dashboard at ``/ui``: models, the configured and observed split, workers and
rollouts, for an operator's browser (see README.md, "Dashboard").

`DashboardState` builds the state document the page polls; `SplitSampler` keeps the last
minute of the request counters for the observed split; `dashboard_routers` are the routes.
"""

from __future__ import annotations

from gateway.dashboard.registry_reads import RegistryReads
from gateway.dashboard.routes import dashboard_routers
from gateway.dashboard.sampler import SplitSampler
from gateway.dashboard.state import DashboardState

__all__ = ["DashboardState", "RegistryReads", "SplitSampler", "dashboard_routers"]
