"""Gateway targets G1, G2, G3: the cost per request against direct, nginx and a bare proxy.

The gateway against the worker direct, nginx and a bare Python proxy, side by side in one
run; the targets are the reference targets listed in docs/BENCHMARKS.md.

``wrk -t1`` drives every path; G1-G3 take the median of interleaved rounds (one in
``--quick``, three otherwise), and every round is in the JSON.

* **G1** added p50 at concurrency 1: ``wrk -c1`` (closed loop, one keep-alive connection)
  direct to the worker and via the gateway; ``p50(gateway) - p50(direct)``.
* **G2** throughput at ``wrk -c64``: gateway / direct to the same worker process, with
  ``nginx`` (``proxy_pass`` to a keep-alive upstream, one worker process) in front of the
  same worker as the reference, and the CPU every process used (``/proc``; ``other`` is the
  rest of the machine, which is shared).
* **G3** the gateway's full feature path / bare forwarding. *Full*: ``POST
  /v2/models/m/infer`` with ``X-Model-Version: ^1`` (a range resolved) and ``X-Route-Key``
  under a 90/10 sticky traffic policy, with per-request metrics (the access log is opt-in).
  *Bare*: `bench.harness.bare` under the same server (uvicorn, one process), forwarding
  over pooled keep-alive HTTP/1.1 connections (`RawPool`, the same approach as the
  gateway's forwarder) to the worker's fixed URL: no routing, no metrics, no retries.
  ``bare_aiohttp`` is the same proxy with aiohttp. Auth and rate limiting are not on the
  gateway's inference path, so neither side has them.

Extras, in full mode (or with ``--clients`` / ``--profile``): the bare proxy with a default
``httpx.AsyncClient``, and a py-spy profile of the gateway at c64.

    python -m bench.gateway_overhead [--quick] [--out DIR] [--no-profile] [--no-clients]
"""

from __future__ import annotations

import sys
from functools import partial
from statistics import median
from typing import Any

import httpx

from bench import _gateway
from bench._gateway import FULL_HEADERS, TARGETS, Row, Run, answers, say, verdict
from bench.harness import (
    BODY,
    Proc,
    free_port,
    nginx_binary,
    nginx_conf,
    profile_during,
    wait_until,
    wrk,
)

#: Name -> (url, headers, processes whose CPU is metered).
Targets = dict[str, tuple[str, dict[str, str], dict[str, Proc]]]
PREFERRED = ["direct", "nginx", "bare_aiohttp", "bare_raw", "gateway_full", "gateway_exact"]


def _start_paths(run: Run) -> Targets:
    """Start the bare proxies and nginx in front of worker a; every path, once it answers."""
    dep, plan = run.dep, run.plan
    worker_a = dep.workers["a"][0]
    gw = dep.gateway_url
    assert dep.gateway is not None
    targets: Targets = {
        "direct": (run.direct_url, {}, {"worker": worker_a}),
        "gateway_full": (
            f"{gw}/v2/models/m/infer",
            FULL_HEADERS,
            {"gateway": dep.gateway, "worker": worker_a},
        ),
        "gateway_exact": (
            f"{gw}/v2/models/m/versions/1.0.0/infer",
            {},
            {"gateway": dep.gateway, "worker": worker_a},
        ),
    }
    for kind in ("aiohttp", "raw", *(("httpx",) if plan.clients else ())):
        port = free_port()
        proxy = dep.start(
            f"bare-{kind}",
            [sys.executable, "-m", "bench.harness.bare", str(port)],
            BENCH_UPSTREAM=run.direct_url,
            BENCH_CLIENT=kind,
        )
        url = f"http://127.0.0.1:{port}/infer"
        targets[f"bare_{kind}"] = (url, {}, {"bare proxy": proxy, "worker": worker_a})
    nginx = nginx_binary()
    if nginx:
        port = free_port()
        conf = nginx_conf(run.root, port, dep.workers["a"][1])
        dep.start("nginx", [nginx, "-p", str(run.root), "-c", str(conf), "-g", "daemon off;"])
        targets["nginx"] = (
            f"http://127.0.0.1:{port}/v2/models/m/versions/1.0.0/infer",
            {},
            {"nginx": dep.procs["nginx"], "worker": worker_a},
        )
    for name, (url, headers, _) in targets.items():
        wait_until(partial(answers, url, **headers), f"{name} to answer", 30)
    return targets


def _summary(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per level and path: the median of the rounds, and every round's rps and p50."""
    summary: dict[str, Any] = {}
    for level in runs:
        summary[level] = {}
        for name, rows in runs[level].items():
            summary[level][name] = {
                "rps": median([r["rps"] for r in rows]),
                "p50_ms": median([r["p50_ms"] for r in rows]),
                "p99_ms": median([r["p99_ms"] for r in rows]),
                "cpu_us_per_request": {
                    k: median([r["cpu_us_per_request"].get(k, 0.0) for r in rows])
                    for k in rows[0]["cpu_us_per_request"]
                },
                "other_load_percent": median(
                    [r["cpu_percent_of_core"]["other (not this bench)"] for r in rows]
                ),
                "rps_all_rounds": [r["rps"] for r in rows],
                "p50_ms_all_rounds": [r["p50_ms"] for r in rows],
            }
    return summary


def _rounds(run: Run, targets: Targets) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """c1 then c64 over every path per round, in reverse order every other round."""
    plan, script = run.plan, run.script
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {"c1": {}, "c64": {}}
    order = [n for n in PREFERRED if n in targets] + [n for n in targets if n not in PREFERRED]
    order = [n for n in order if n != "bare_httpx"]
    for rnd in range(plan.rounds):
        for level, conns, seconds in (("c1", 1, plan.c1_seconds), ("c64", 64, plan.wrk_seconds)):
            for name in order if rnd % 2 == 0 else reversed(order):
                url, headers, meter = targets[name]
                if rnd == 0:
                    wrk(url, plan.warmup_seconds, conns, script, headers)
                run.quiet.wait()
                r = wrk(url, seconds, conns, script, headers, meter)
                runs[level].setdefault(name, []).append(r)
                say(
                    f"{level} {name:14} {r['rps']:8.0f} req/s p50 {r['p50_ms']:.3f} ms "
                    f"p99 {r['p99_ms']:.2f} ms cpu {r['cpu_percent_of_core']}"
                )
    return runs


def _ratios(summary: dict[str, Any], results: dict[str, Any]) -> dict[str, float | None]:
    s1, s64 = summary["c1"], summary["c64"]
    d1, d64 = s1["direct"]["p50_ms"], s64["direct"]["rps"]
    nginx = "nginx" in s64
    ratios: dict[str, float | None] = {
        "G1_added_p50_ms": round(s1["gateway_full"]["p50_ms"] - d1, 3),
        "G1_exact_added_p50_ms": round(s1["gateway_exact"]["p50_ms"] - d1, 3),
        "G1_nginx_added_p50_ms": round(s1["nginx"]["p50_ms"] - d1, 3) if nginx else None,
        "G2_gateway_over_direct": round(s64["gateway_full"]["rps"] / d64, 3),
        "G2_exact_over_direct": round(s64["gateway_exact"]["rps"] / d64, 3),
        "G2_nginx_over_direct": round(s64["nginx"]["rps"] / d64, 3) if nginx else None,
        "G2_bare_over_direct": round(s64["bare_raw"]["rps"] / d64, 3),
        # G3's bare side forwards like the gateway does (HTTP/1.1 over asyncio protocols).
        "G3_full_over_bare": round(s64["gateway_full"]["rps"] / s64["bare_raw"]["rps"], 3),
        "G3_full_over_exact": round(s64["gateway_full"]["rps"] / s64["gateway_exact"]["rps"], 3),
    }
    if "clients" in results:
        clients = results["clients"]
        ratios["clients_httpx_over_aiohttp"] = round(
            clients["bare_httpx_c64"]["rps"] / clients["bare_aiohttp_c64_rps"], 3
        )
    return ratios


def measure(run: Run) -> None:
    """G1-G3 (and the extras the plan asks for) into ``run.results``."""
    run.ensure_gateway()
    run.ensure_workers("a")
    dep, plan, script = run.dep, run.plan, run.script
    targets = _start_paths(run)
    url, headers, _ = targets["gateway_full"]
    r = httpx.post(url, content=BODY, headers={"content-type": "application/json", **headers})
    run.results["full_path_response_headers"] = {
        k: r.headers.get(k) for k in ("x-model-version", "x-backend", "x-route")
    }
    say(f"ready after {run.runtime_s:.1f}s")
    runs = run.results["overhead_runs"] = _rounds(run, targets)
    summary = run.results["overhead"] = _summary(runs)
    if "bare_httpx" in targets:
        say("forwarding clients: the bare proxy with a default httpx.AsyncClient")
        url, _, meter = targets["bare_httpx"]
        wrk(url, plan.warmup_seconds, 64, script)
        run.results["clients"] = {
            "bare_httpx_c64": wrk(url, plan.wrk_seconds, 64, script, None, meter),
            "bare_aiohttp_c64_rps": summary["c64"]["bare_aiohttp"]["rps"],
            "bare_raw_c64_rps": summary["c64"]["bare_raw"]["rps"],
        }
    if plan.profile:
        spy_s = plan.spy_seconds
        say(f"profiling gateway_full (py-spy, {spy_s}s) during a c64 run")
        url, headers, meter = targets["gateway_full"]
        run.results["profiles"]["gateway_full_c64"] = profile_during(
            meter["gateway"].serving_pid(),
            spy_s,
            run.root / "spy-gateway_full.txt",
            lambda: wrk(url, spy_s, 64, script, headers),
        )
    for name in ("nginx", "bare-aiohttp", "bare-raw", "bare-httpx"):
        dep.stop(name)
    run.results["ratios"] = _ratios(summary, run.results)


def _proxy_cpu(row: dict[str, Any]) -> float:
    cpu = row["cpu_us_per_request"]
    for k in ("gateway", "bare proxy", "nginx"):
        if k in cpu:
            return float(cpu[k])
    return float(cpu.get("worker", 0.0))


def report(run: Run) -> list[Row]:
    """The table of paths, then G1-G3's verdict rows."""
    plan, summary, ratios = run.plan, run.results["overhead"], run.results["ratios"]
    s1, s64 = summary["c1"], summary["c64"]
    d1, d64 = s1["direct"]["p50_ms"], s64["direct"]["rps"]
    print(
        f"# wrk -t1, c1 {plan.c1_seconds}s / c64 {plan.wrk_seconds}s per run, "
        f"median of {plan.rounds} interleaved rounds"
    )
    print(
        f"{'path':22} {'c1 p50':>7} {'added':>6} {'c64 req/s':>9} {'/direct':>7} {'c64 p99':>8}"
        f" {'proxy CPU us/req c1, c64':>25}  {'other load % c64':>16}"
    )
    for name in s64:
        print(
            f"{name:22} {s1[name]['p50_ms']:7.3f} {s1[name]['p50_ms'] - d1:6.3f} "
            f"{s64[name]['rps']:9.0f} {s64[name]['rps'] / d64:7.2f} {s64[name]['p99_ms']:8.1f}"
            f" {_proxy_cpu(s1[name]):12.0f}, {_proxy_cpu(s64[name]):11.0f}"
            f"  {s64[name]['other_load_percent']:16.0f}"
        )
    if "clients" in run.results:
        print(
            f"bare proxy, httpx.AsyncClient: "
            f"{run.results['clients']['bare_httpx_c64']['rps']:.0f} req/s at c64 "
            f"({ratios['clients_httpx_over_aiohttp']:.2f}x aiohttp)"
        )
    g1, g2, g3 = (
        ratios["G1_added_p50_ms"],
        ratios["G2_gateway_over_direct"],
        ratios["G3_full_over_bare"],
    )
    return [
        ("G1 added p50 c1 (ms)", g1, "<= 0.3", verdict(g1 <= TARGETS["G1"])),
        ("G2 gateway/direct c64", g2, ">= 0.6", verdict(g2 >= TARGETS["G2"])),
        ("G2 nginx/direct c64", ratios["G2_nginx_over_direct"], "(reference)", ""),
        ("G3 full/bare c64", g3, ">= 0.85", verdict(g3 >= TARGETS["G3"])),
    ]


if __name__ == "__main__":
    sys.exit(_gateway.main(__doc__ or "", "gateway_overhead", measure, report))
