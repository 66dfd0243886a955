"""The access log's cost: the gateway with it on (the default) against the same gateway with
it off, side by side in one run (needs ``wrk``).

Two ``modelgate serve`` processes on one registry, in front of one worker: ``log_on`` with
``MODELGATE_GATEWAY_ACCESS_LOG=true`` and ``MODELGATE_LOG_FORMAT=json`` (every request
writes its line to the process's log file, as in production), ``log_off`` with
``MODELGATE_GATEWAY_ACCESS_LOG=false``. Both run the full feature path (`FULL_HEADERS`: a
range resolved under a sticky 90/10 policy). ``wrk -t1`` at c64 (throughput, and the
gateway's CPU per request from ``/proc``) and at c1 (p50), in interleaved rounds (the order
reversed every other round), medians reported. Then, *paired*: both gateways loaded at once
(``wrk -c32`` each) so that the shared machine's other load falls on both alike, and
their CPU per request compared; on a busy 2-core machine that ratio is the steadier one.
Last, the access lines written are counted against the requests ``log_on`` answered (every
request must be logged: no sampling).

    python -m bench.access_log [--quick] [--out DIR]
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from statistics import median
from typing import Any

from bench import _gateway
from bench._gateway import FULL_HEADERS, Row, Run, answers, say
from bench.harness import CLI, free_port, wait_until, wrk

PATHS = {
    "log_on": {"MODELGATE_GATEWAY_ACCESS_LOG": "true", "MODELGATE_LOG_FORMAT": "json"},
    "log_off": {"MODELGATE_GATEWAY_ACCESS_LOG": "false", "MODELGATE_LOG_FORMAT": "json"},
}
#: The largest throughput cost that needs no further work (the issue's "cheap").
TARGET = 0.95


def measure(run: Run) -> None:
    run.ensure_workers("a")
    dep, plan, script = run.dep, run.plan, run.script
    dep.stop("gateway")  # the two measured gateways replace the set-up one
    urls: dict[str, str] = {}
    for name, env in PATHS.items():
        port = free_port()
        dep.start(name, [*CLI, "serve", "--port", str(port)], **env)
        urls[name] = f"http://127.0.0.1:{port}/v2/models/m/infer"
    for name, url in urls.items():
        wait_until(partial(answers, url, **FULL_HEADERS), f"{name} to answer", 60)
    answered = dict.fromkeys(PATHS, 0)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {"c1": {}, "c64": {}}
    order = list(PATHS)
    for rnd in range(plan.rounds):
        for level, conns, seconds in (("c1", 1, plan.c1_seconds), ("c64", 64, plan.wrk_seconds)):
            for name in order if rnd % 2 == 0 else reversed(order):
                meter = {"gateway": dep.procs[name]}
                if rnd == 0:
                    answered[name] += wrk(
                        urls[name], plan.warmup_seconds, conns, script, FULL_HEADERS
                    )["requests"]
                run.quiet.wait()
                r = wrk(urls[name], seconds, conns, script, FULL_HEADERS, meter)
                answered[name] += r["requests"]
                runs[level].setdefault(name, []).append(r)
                say(
                    f"{level} {name:8} {r['rps']:8.0f} req/s p50 {r['p50_ms']:.3f} ms "
                    f"cpu {r['cpu_us_per_request'].get('gateway', 0):.0f} us/req"
                )
    paired = _paired(run, urls)
    for name in PATHS:
        dep.stop(name)  # flushes what is pending
    log = (run.root / "log_on.log").read_text(errors="replace")
    lines = log.count('"logger":"modelgate.access"')
    summary = {
        level: {
            name: {
                "rps": median(r["rps"] for r in rows),
                "p50_ms": median(r["p50_ms"] for r in rows),
                "p99_ms": median(r["p99_ms"] for r in rows),
                "gateway_cpu_us": median(r["cpu_us_per_request"].get("gateway", 0) for r in rows),
                "other_load_percent": median(
                    r["cpu_percent_of_core"]["other (not this bench)"] for r in rows
                ),
                "rps_all_rounds": [r["rps"] for r in rows],
            }
            for name, rows in by_path.items()
        }
        for level, by_path in runs.items()
    }
    on, off = summary["c64"]["log_on"], summary["c64"]["log_off"]
    run.results["access_log"] = {
        "runs": runs,
        "summary": summary,
        "throughput_on_over_off_c64": round(on["rps"] / off["rps"], 3),
        "cpu_us_added_c64": round(on["gateway_cpu_us"] - off["gateway_cpu_us"], 1),
        "p50_added_ms_c1": round(
            summary["c1"]["log_on"]["p50_ms"] - summary["c1"]["log_off"]["p50_ms"], 3
        ),
        "paired": paired,
        "paired_cpu_on_over_off_c32": round(
            median(r["log_on"]["cpu_us_per_request"]["gateway"] for r in paired)
            / median(r["log_off"]["cpu_us_per_request"]["gateway"] for r in paired),
            3,
        ),
        "requests_answered_log_on": answered["log_on"]
        + sum(r["log_on"]["requests"] for r in paired),
        "access_lines_written": lines,
    }


def _paired(run: Run, urls: dict[str, str]) -> list[dict[str, dict[str, Any]]]:
    """Both gateways loaded at once (``wrk -c32`` each, same worker), so that the machine's
    other load falls on both alike: their CPU per request, side by side."""
    plan, script, dep = run.plan, run.script, run.dep
    rounds = []
    with ThreadPoolExecutor(len(urls)) as pool:
        for _ in range(plan.rounds * 2):
            run.quiet.wait()
            futures = {
                name: pool.submit(
                    wrk,
                    url,
                    plan.wrk_seconds,
                    32,
                    script,
                    FULL_HEADERS,
                    {"gateway": dep.procs[name]},
                )
                for name, url in urls.items()
            }
            rounds.append({name: f.result() for name, f in futures.items()})
            on, off = (rounds[-1][n]["cpu_us_per_request"]["gateway"] for n in PATHS)
            say(f"paired c32+c32: gateway CPU us/req log_on {on:.0f}, log_off {off:.0f}")
    return rounds


def report(run: Run) -> list[Row]:
    res = run.results["access_log"]
    summary = res["summary"]
    print(
        f"{'path':10} {'c1 p50 ms':>9} {'c64 req/s':>9} {'c64 p99 ms':>10} {'CPU us/req c64':>14}"
    )
    for name in PATHS:
        c1, c64 = summary["c1"][name], summary["c64"][name]
        print(
            f"{name:10} {c1['p50_ms']:9.3f} {c64['rps']:9.0f} {c64['p99_ms']:10.2f} "
            f"{c64['gateway_cpu_us']:14.0f}"
        )
    print(
        f"access lines written {res['access_lines_written']} for "
        f"{res['requests_answered_log_on']} requests answered by log_on"
    )
    print(
        f"paired (both loaded at once, {len(res['paired'])} rounds): gateway CPU per request "
        f"on/off = {res['paired_cpu_on_over_off_c32']:.3f}"
    )
    ratio = res["throughput_on_over_off_c64"]
    logged = res["access_lines_written"] >= res["requests_answered_log_on"]
    return [
        ("on/off throughput c64", ratio, f">= {TARGET}", _gateway.verdict(ratio >= TARGET)),
        ("CPU us/req added c64", res["cpu_us_added_c64"], "(recorded)", ""),
        ("paired CPU/req on/off", res["paired_cpu_on_over_off_c32"], "(recorded)", ""),
        ("p50 added c1 (ms)", res["p50_added_ms_c1"], "(recorded)", ""),
        ("every request logged", float(logged), "1", _gateway.verdict(logged)),
    ]


if __name__ == "__main__":
    sys.exit(_gateway.main(__doc__ or "", "access_log", measure, report))
