"""Resolution microbenchmark: 1,000 models x 50 versions from the in-memory snapshot.

Prints µs per resolution for uncached (first sight of a reference at a revision) and cached
lookups, and for the traffic choice after it. Run: ``make bench`` or
``python -m bench.bench_resolve [--models N] [--versions N]``. Target (G-resolve): ≤ 20 µs.
"""

from __future__ import annotations

import argparse
import sys

import semver

from bench.harness import per_call_us
from registry.constraints import parse_constraint
from registry.resolution import Arm, ModelView, Policy, VersionInfo
from registry.snapshot import RegistrySnapshot
from registry.traffic import choose

REFERENCES = [
    "^1.2",
    "~2.1.1",
    ">=1.0.0 <3",
    "0.x || 2.x",
    "stable",
    "latest",
    "canary",
    None,
    "1.3.1",
    "^0.4.0-rc.1",
]


def build(models: int, versions: int) -> RegistrySnapshot:
    views = {}
    for m in range(models):
        infos = []
        for i in range(versions):
            major, minor, patch = i // 20, (i // 4) % 5, i % 4
            pre = "rc.1" if i % 10 == 7 else None  # 10% prereleases, never 1.3.1
            parsed = semver.Version(major, minor, patch, pre)
            infos.append(VersionInfo(str(parsed), parsed, "active", 0))
        policy = Policy((Arm(infos[-1].version, 90), Arm(infos[-2].version, 10))) if m % 2 else None
        views[f"model-{m}"] = ModelView.build(
            f"model-{m}", infos, {"canary": infos[-3].version}, policy
        )
    return RegistrySnapshot(1, views)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=50)
    args = parser.parse_args()
    snapshot = build(args.models, args.versions)
    names = list(snapshot.models)
    refs = REFERENCES
    for ref in refs:
        if ref and ref not in ("stable", "latest", "canary"):
            parse_constraint(ref)  # warm the parse cache, as a running gateway has it

    def uncached(i: int) -> object:
        snapshot._cache.clear()
        return snapshot.resolve(names[i % len(names)], refs[i % len(refs)])

    def cached(i: int) -> object:
        return snapshot.resolve(names[i % len(names)], refs[i % len(refs)])

    def full(i: int) -> object:
        name = names[i % len(names)]
        resolution = snapshot.resolve(name, refs[i % len(refs)])
        return choose(resolution, snapshot.models[name].policy, str(i))

    n = 20_000
    per_call_us(uncached, 2000)
    rows = [
        ("resolve, uncached (parse cached, 50 versions scanned)", per_call_us(uncached, n)),
        ("resolve, cached per snapshot revision", per_call_us(cached, n * 5)),
        ("resolve (cached) + traffic choice with route key", per_call_us(full, n * 5)),
    ]
    print(f"# {args.models} models x {args.versions} versions, {len(refs)} reference kinds")
    print(f"{'case':58} {'µs/op':>8}  target ≤ 20 µs")
    for name, value in rows:
        print(f"{name:58} {value:8.2f}  {'ok' if value <= 20 else 'MISS'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
