"""Active probes against fake workers: a failing probe takes the version out of rotation
and tells ``on_unready``; a passing one brings it back."""

from __future__ import annotations

from gateway.balancing.balancer import Balancer, BalancerSettings, WorkerInfo
from gateway.balancing.probes import Prober
from tests.support.fake_workers import FakeWorker

KEY = ("m", "1.0.0")


async def test_probes_take_a_failing_version_out_until_it_passes_again() -> None:
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
        assert told == [("a", "m", "1.0.0")]
        assert not balancer.has_ready(*KEY)
        # A new announcement of its ready set clears the balancer's verdict; the next
        # failed probe gives it again.
        workers = {"a": WorkerInfo("a", fake.url, frozenset({KEY, ("m", "2.0.0")}), 0.0)}
        balancer.update(workers)
        prober.workers = workers
        assert balancer.has_ready(*KEY)
        await prober.probe_all()
        assert not balancer.has_ready(*KEY)
        assert told.count(("a", "m", "1.0.0")) == 2
        fake.mode = "ok"
        await prober.probe_all()
        assert balancer.has_ready(*KEY)
        assert fake.requests[0][0] == "/v2/models/m/versions/1.0.0/ready"
    finally:
        await prober.stop()
        await fake.stop()


async def test_a_worker_back_under_its_id_is_judged_afresh() -> None:
    fake = await FakeWorker("a", 503).start()
    balancer = Balancer(BalancerSettings(slow_start_s=0))
    prober = Prober(balancer, timeout_s=1.0)
    await prober.start()
    try:
        for _ in range(2):  # it fails, leaves (announces nothing), comes back, fails again
            workers = {"a": WorkerInfo("a", fake.url, frozenset({KEY}), 0.0)}
            balancer.update(workers)
            prober.workers = workers
            await prober.probe_all()
            assert not balancer.has_ready(*KEY)
            balancer.update({})
            prober.workers = {}
            await prober.probe_all()
            assert prober.failing == set()
    finally:
        await prober.stop()
        await fake.stop()
