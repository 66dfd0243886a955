"""``make interop``: perf_analyzer, the KServe SDK and MLServer, each from its own
virtualenv under ``.interop/``, against a live modelgate stack (see `__main__`)."""
