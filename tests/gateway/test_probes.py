"""Active probes against fake workers: a failing probe takes the version out of rotation
and tells ``on_unready`` once; a passing one brings it back."""

from __future__ import annotations

from gateway.balancing.balancer import Balancer, BalancerSettings, WorkerInfo
from gateway.balancing.probes import Prober
from tests.support.fake_workers import FakeWorker

KEY = ("m", "1.0.0")


async def test_a_failing_probe_marks_unready_and_tells_on_unready_once() -> None:
    fake = await FakeWorker("a", 503).start()
    balancer = Balancer(BalancerSettings(slow_start_s=0))
    workers = {"a": WorkerInfo("a", fake.url, frozenset({KEY}), 0.0)}
    balancer.update(workers)
    told: list[tuple[str, str, str]] = []
    prober = Prober(balancer, timeout_s=1.0, on_unready=lambda *news: told.append(news))
    prober.workers = workers
    await prober.start()
    try:
        await prober.probe_all()
        await prober.probe_all()  # still failing: no news
        assert told == [("a", "m", "1.0.0")]
        assert not balancer.has_ready(*KEY)
        fake.mode = "ok"
        await prober.probe_all()
        assert balancer.has_ready(*KEY)
        assert fake.requests[0][0] == "/v2/models/m/versions/1.0.0/ready"
    finally:
        await prober.stop()
        await fake.stop()
