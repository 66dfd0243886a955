#!/usr/bin/env python3
"""A canary rollout on modelgate's admin API with httpx alone (no modelgate import).

    MODELGATE_URL=http://gateway:8000 MODELGATE_TOKEN=... \\
        python examples/rollout.py MODEL VERSION [--steps 10,50,100] [--interval 30] \\
            [--max-error-rate 0.01] [--max-latency-ratio 2] [--min-requests 100] [--alias prod]

It starts the rollout (``POST /admin/v1/models/{model}/rollouts``), polls it once a second
and prints each step and judgement, and exits 0 when the candidate was promoted, 3 when a
gate rolled it back, 4 when it was aborted, 1 when the API refused or could not be reached.
Ctrl-C (or SIGTERM) aborts the rollout, so traffic goes back to the baseline.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

import httpx

ACTIVE = {"waiting", "running", "paused"}
EXIT_CODES = {"promoted": 0, "rolled_back": 3, "aborted": 4}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("version")
    parser.add_argument("--url", default=os.environ.get("MODELGATE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--token", default=os.environ.get("MODELGATE_TOKEN"))
    parser.add_argument("--steps", help="the candidate's weights in %%, e.g. 10,25,50,100")
    parser.add_argument("--interval", type=float, help="seconds per step before it is judged")
    parser.add_argument("--max-error-rate", type=float)
    parser.add_argument("--max-latency-ratio", type=float)
    parser.add_argument("--max-p99-ms", type=float)
    parser.add_argument("--min-requests", type=int)
    parser.add_argument("--alias", help="moved to VERSION on promotion")
    parser.add_argument("--baseline", help="default: the version serving the model now")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between reads")
    return parser.parse_args(argv)


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """Only what was given: the API fills in its defaults for the rest."""
    body: dict[str, Any] = {"version": args.version}
    if args.steps:
        body["steps"] = [int(s) for s in args.steps.split(",")]
    if args.interval is not None:
        body["interval_s"] = args.interval
    gates = {
        name: value
        for name in ("max_error_rate", "max_latency_ratio", "max_p99_ms", "min_requests")
        if (value := getattr(args, name)) is not None
    }
    if gates:
        body["gates"] = gates
    for name in ("alias", "baseline"):
        if getattr(args, name):
            body[name] = getattr(args, name)
    return body


def describe(judgement: dict[str, Any]) -> str:
    c, b = judgement["candidate"], judgement["baseline"]

    def p99(figures: dict[str, Any]) -> str:
        return "-" if figures["p99_ms"] is None else f"{figures['p99_ms']:.1f} ms"

    return (
        f"  step {judgement['step'] + 1} at {judgement['weight']:g}%: {judgement['verdict']}"
        f" (candidate {c['error_rate']:.1%} errors of {c['requests']}, p99 {p99(c)};"
        f" baseline {b['error_rate']:.1%} of {b['requests']}, p99 {p99(b)})"
        + (f": {judgement['reason']}" if judgement.get("reason") else "")
    )


class Interrupted(Exception):
    pass


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def follow(client: httpx.Client, path: str, poll_s: float) -> dict[str, Any]:
    """Poll the rollout until it is no longer active, printing each change."""
    shown_history, shown_state = 0, None
    while True:
        response = client.get(path)
        response.raise_for_status()
        rollout: dict[str, Any] = response.json()
        for judgement in rollout["history"][shown_history:]:
            print(describe(judgement), flush=True)
        shown_history = len(rollout["history"])
        state = (rollout["state"], rollout["step"])
        if state != shown_state:
            steps = rollout["steps"]
            where = f"step {rollout['step'] + 1}/{len(steps)}" if rollout["step"] >= 0 else "-"
            print(f"{rollout['state']}: {where}, weight {rollout['weight']:g}%", flush=True)
            shown_state = state
        if rollout["state"] not in ACTIVE:
            return rollout
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    base = f"/admin/v1/models/{args.model}/rollouts"
    with httpx.Client(base_url=args.url, headers=headers, timeout=30) as client:
        try:
            response = client.post(base, json=request_body(args))
        except httpx.HTTPError as exc:
            print(f"cannot reach {args.url}: {exc}", file=sys.stderr)
            return 1
        if response.status_code != 201:
            print(f"[{response.status_code}] {response.text}", file=sys.stderr)
            return 1
        rollout = response.json()
        path = f"{base}/{rollout['id']}"
        print(
            f"rollout #{rollout['id']}: {args.model} {rollout['baseline']} -> {args.version},"
            f" steps {rollout['steps']}, every {rollout['interval_s']:g}s",
            flush=True,
        )
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            final = follow(client, path, args.poll)
        except (KeyboardInterrupt, Interrupted):
            client.post(f"{path}/abort")
            print(f"interrupted: rollout #{rollout['id']} aborted", file=sys.stderr)
            return 130
        except httpx.HTTPError as exc:
            print(f"lost the rollout: {exc}", file=sys.stderr)
            return 1
    outcome = final["state"]
    reason = f": {final['reason']}" if final["reason"] else ""
    print(f"{args.model} {args.version}: {outcome}{reason}")
    return EXIT_CODES.get(outcome, 1)


if __name__ == "__main__":
    sys.exit(main())
