"""Benchmarks that print ratios measured side by side in one run (docs/BENCHMARKS.md).

Each is a module run from the repository root, for example ``python -m
bench.gateway_overhead --quick``; what they share (processes, CPU meters, HTTP clients,
load generators, profiling) is `bench.harness`, and what the gateway targets share is
`bench._gateway`.
"""
