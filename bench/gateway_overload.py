"""Gateway target G6: goodput and the 429s' p99 at twice the gateway's saturating rate.

The per-model gate is set; the targets are the reference targets listed in
docs/BENCHMARKS.md.

The gateway runs with ``MODELGATE_GATEWAY_MODEL_CONCURRENCY`` / ``_QUEUE`` = 32 / 32. Its
saturating throughput comes first (64 connections back to back from `LoadGen`, so both
figures share one client cost), then twice that rate is offered open loop (fixed arrival
times; latency counted from the due time and from the send): goodput (200s/s) / max, and
the 429s' p99.

* **gateway-bound**: model ``m`` on worker ``a``; the gateway itself is the bottleneck.
* **model-bound** (a diagnostic): model ``d`` on worker ``d``, which sleeps 40 ms per
  request behind the gate, so the model saturates first: the case the gate exists for.
* **the price of one 429**: a second gateway whose gate is 1 + 0, in front of ``d`` at
  ``wrk -c64``, so nearly every answer is a 429; its CPU per answer.

With ``--profile`` (on in full mode): a py-spy profile of the gateway during a 2x run.

    python -m bench.gateway_overload [--quick] [--out DIR] [--no-profile]
"""

from __future__ import annotations

import sys
from typing import Any

import httpx

from bench import _gateway
from bench._gateway import FULL_HEADERS, TARGETS, Row, Run, say, verdict
from bench.harness import (
    BODY,
    CLI,
    LoadGen,
    Proc,
    free_port,
    profile_during,
    run_loadgen,
    wait_until,
    wrk,
)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _pair(run: Run, path: str, meter: dict[str, Proc], seconds: int) -> dict[str, Any]:
    """Saturation (closed loop, 64 connections), then 2x that rate offered open loop."""
    port, warm = _port(run.dep.gateway_url), run.plan.warmup_seconds

    def gen() -> LoadGen:
        return LoadGen("127.0.0.1", port, path, FULL_HEADERS)

    run_loadgen(lambda: gen().closed(64, 0.5, warm))
    run.quiet.wait()
    saturation = run_loadgen(lambda: gen().closed(64, warm, seconds), meter)
    top = saturation["goodput_rps"]
    run.quiet.wait()
    overload = run_loadgen(lambda: gen().open(2 * top, warm, seconds), meter)
    return {
        "max_rps": top,
        "saturation_closed_loop_64": saturation,
        "overload_2x_open_loop": overload,
        "goodput_ratio": overload["goodput_rps"] / top if top else 0.0,
        "reject_p99_ms": overload["rejected_latency"].get("p99_ms"),
        "reject_p99_service_ms": overload["rejected_service"].get("p99_ms"),
    }


def _rejection_cost(run: Run) -> dict[str, Any]:
    """A gateway whose gate admits one request and queues none, in front of model d (40 ms
    per request) at c64: nearly every answer is a 429; the gateway's CPU per answer."""
    dep, plan, script = run.dep, run.plan, run.script
    say("the price of a 429: gateway-shed (gate 1+0) in front of model d at c64")
    port = free_port()
    shed = dep.start(
        "gateway-shed",
        [*CLI, "serve", "--port", str(port)],
        MODELGATE_GATEWAY_MODEL_CONCURRENCY="1",
        MODELGATE_GATEWAY_MODEL_QUEUE="0",
    )
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: httpx.get(f"{base}/v2/health/ready").status_code == 200, "gateway-shed")
    dep.wait_serving({"d": {"d@1.0.0"}}, via=base)
    url = f"{base}/v2/models/d/infer"
    wait_until(lambda: httpx.post(url, content=BODY).status_code in (200, 429), "shed", 30)
    wrk(url, plan.warmup_seconds, 64, script)
    run.quiet.wait()
    out = wrk(url, plan.wrk_seconds, 64, script, None, {"gateway": shed})
    out["fraction_429"] = round(out["non2xx"] / max(1, out["requests"]), 4)
    dep.stop("gateway-shed")
    say(
        f"shed: {out['rps']:.0f} answers/s, {out['fraction_429']:.3f} of them 429, "
        f"gateway {out['cpu_us_per_request'].get('gateway', 0):.0f} us CPU per answer"
    )
    return out


def measure(run: Run) -> None:
    """G6 gateway-bound and model-bound, the price of a 429, and the overload profile."""
    dep, plan = run.dep, run.plan
    say(f"G6: gateway with the per-model gate {plan.gate_concurrency}+{plan.gate_queue}")
    run.ensure_gateway(**plan.gate_env)
    run.ensure_workers("a", "d")
    assert dep.gateway is not None
    meter = {"gateway": dep.gateway, "worker": dep.workers["a"][0]}
    gateway_bound = _pair(run, "/v2/models/m/infer", meter, plan.g6_seconds)
    over = gateway_bound["overload_2x_open_loop"]
    say(
        f"G6 gateway-bound: max {gateway_bound['max_rps']:.0f}/s; 2x offered: goodput "
        f"{over['goodput_rps']:.0f}/s, statuses {over['status_counts']}, 429 p99 "
        f"{gateway_bound['reject_p99_ms'] or float('nan'):.2f} ms"
    )
    model_bound = _pair(
        run, "/v2/models/d/infer", {"gateway": dep.gateway, "worker": dep.workers["d"][0]}, 4
    )
    say(
        f"G6 model-bound (d, {plan.model_delay_ms} ms per request, gate "
        f"{plan.gate_concurrency}): max {model_bound['max_rps']:.0f}/s; 2x: goodput "
        f"{model_bound['overload_2x_open_loop']['goodput_rps']:.0f}/s, 429 p99 "
        f"{model_bound['reject_p99_ms'] or float('nan'):.2f} ms"
    )
    run.results["g6"] = {
        "gateway_bound": gateway_bound,
        "model_bound": model_bound,
        "model_bound_setup": f"worker d: --fault-delay-ms {plan.model_delay_ms} on every "
        f"request (a sleep, no CPU); gate {plan.gate_concurrency}+{plan.gate_queue} caps d at "
        f"about {plan.gate_concurrency * 1000 / plan.model_delay_ms:.0f}/s",
    }
    if plan.profile:
        spy_s, rate, port = plan.spy_seconds, 2 * gateway_bound["max_rps"], _port(dep.gateway_url)
        say(f"profiling the gateway (py-spy, {spy_s}s) during a 2x overload run")
        run.results["profiles"]["gateway_overload_2x"] = profile_during(
            dep.gateway.serving_pid(),
            spy_s,
            run.root / "spy-2x.txt",
            lambda: run_loadgen(
                lambda: LoadGen("127.0.0.1", port, "/v2/models/m/infer", FULL_HEADERS).open(
                    rate, 0.5, spy_s
                )
            ),
        )
    run.results["rejection_cost"] = _rejection_cost(run)

    def rounded(value: float | None, digits: int) -> float | None:
        return None if value is None else round(value, digits)

    run.results["ratios"] = {
        "G6_goodput_2x_over_max": round(gateway_bound["goodput_ratio"], 3),
        "G6_reject_p99_ms": rounded(gateway_bound["reject_p99_ms"], 2),
        "G6_reject_p99_service_ms": rounded(gateway_bound["reject_p99_service_ms"], 2),
        "G6_model_bound_goodput_2x_over_max": round(model_bound["goodput_ratio"], 3),
        "G6_model_bound_reject_p99_ms": rounded(model_bound["reject_p99_ms"], 2),
        "G6_rejection_gateway_cpu_us": run.results["rejection_cost"]["cpu_us_per_request"].get(
            "gateway"
        ),
    }


def report(run: Run) -> list[Row]:
    """The two G6 cases and the price of a 429, then the verdict rows."""
    g6, ratios, shed = run.results["g6"], run.results["ratios"], run.results["rejection_cost"]
    nan = float("nan")
    for label, case in (("gateway-bound", g6["gateway_bound"]), ("model-bound", g6["model_bound"])):
        over = case["overload_2x_open_loop"]
        print(
            f"G6 {label + ':':15} max {case['max_rps']:.0f}/s (closed loop, 64 conns), "
            f"offered {2 * case['max_rps']:.0f}/s open loop, goodput {over['goodput_rps']:.0f}/s "
            f"({case['goodput_ratio']:.2f}), statuses {over['status_counts']}, "
            f"429 p99 {case['reject_p99_ms'] or nan:.1f} ms from due time, "
            f"{case['reject_p99_service_ms'] or nan:.1f} ms from send"
        )
    print(
        f"price of a 429 (gate 1+0, c64): {shed['rps']:.0f} answers/s, "
        f"{shed['fraction_429']:.3f} of them 429, "
        f"{ratios['G6_rejection_gateway_cpu_us'] or nan:.0f} us gateway CPU per answer"
    )
    g6_ratio, reject = ratios["G6_goodput_2x_over_max"], ratios["G6_reject_p99_ms"]
    return [
        ("G6 goodput 2x/max", g6_ratio, ">= 0.9", verdict(g6_ratio >= TARGETS["G6"])),
        (
            "G6 429 p99 (ms)",
            reject,
            "<= 5",
            verdict(reject is not None and reject <= TARGETS["G6_reject_p99_ms"]),
        ),
        (
            "G6 model-bound goodput",
            ratios["G6_model_bound_goodput_2x_over_max"],
            ">= 0.9",
            "(diagnostic)",
        ),
        ("G6 model-bound 429 p99", ratios["G6_model_bound_reject_p99_ms"], "<= 5", "(diagnostic)"),
    ]


if __name__ == "__main__":
    sys.exit(_gateway.main(__doc__ or "", "gateway_overload", measure, report))
