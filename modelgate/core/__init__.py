"""The shared kernel: what the registry, the gateway and the worker all rely on.

It imports none of them. Modules: `errors` (the error base), `rendering` (the one error
renderer), `asgi` (the body reader), `semver` (the precedence key), `announce` (the worker
announcement), `keys` (Redis names), `settings` (shared settings), `logging`.
"""
