"""``modelgate worker``: serve model versions from the registry (or plain files) over OIP v2.

Parses the command line into `backends.settings.WorkerSettings` and hands over to
`backends.server.run_worker`, which assembles and serves the worker.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from modelgate.cli.output import refuse_output

__all__ = ["worker"]


def _refs(values: tuple[str, ...]) -> list[tuple[str, str]]:
    from backends.source import parse_model_ref

    try:
        return [parse_model_ref(v) for v in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--load") from None


def _files(values: tuple[str, ...]) -> dict[tuple[str, str], Path]:
    from backends.source import parse_model_ref

    files: dict[tuple[str, str], Path] = {}
    for value in values:
        ref, sep, path = value.partition("=")
        try:
            key = parse_model_ref(ref)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--model-file") from None
        if not sep or not path:
            raise click.BadParameter(f'expected NAME@VERSION=PATH, got "{value}"')
        files[key] = Path(path)
    return files


@click.command()
@click.option("--host", default=None, help="interface to bind (default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (default 8001)")
@click.option(
    "--grpc-port", type=int, default=None, help="serve gRPC too, on this port (default 0: off)"
)
@click.option("--id", "worker_id", default=None, help="worker id (default <hostname>-<port>)")
@click.option("--url", default=None, help="URL the gateway should use to reach this worker")
@click.option(
    "--load", "loads", multiple=True, metavar="MODEL@VERSION", help="load from the registry"
)
@click.option(
    "--model-file",
    "model_files",
    multiple=True,
    metavar="MODEL@VERSION=PATH",
    help="load a plain .onnx file (no registry needed)",
)
@click.option("--max-batch-size", type=int, default=None, help="rows per batch; 1 = off")
@click.option("--max-queue-delay-us", type=int, default=None, help="wait to fill a batch")
@click.option("--max-queue-size", type=int, default=None, help="queued requests before 503")
@click.option(
    "--load-wait",
    "load_wait_s",
    type=float,
    default=None,
    help="seconds a --load waits for its version to be published (default 0: fail at once)",
)
@click.option(
    "--providers",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="ONNX Runtime execution providers (auto: CUDA when present, else CPU)",
)
@click.option("--intra-op-threads", type=int, default=None, help="ONNX Runtime threads")
@click.option("--fault-error-rate", type=float, default=None, help="fraction failing (500)")
@click.option("--fault-delay-rate", type=float, default=None, help="fraction slowed down")
@click.option("--fault-delay-ms", type=float, default=None, help="added delay when slowed")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="the worker's log level (default info)",
)
@click.pass_context
def worker(
    ctx: click.Context,
    /,
    loads: tuple[str, ...],
    model_files: tuple[str, ...],
    worker_id: str | None,
    **flags: Any,
) -> None:
    """Serve exact model versions over the Open Inference Protocol and announce them (it
    writes logs, JSON lines with MODELGATE_LOG_FORMAT=json; -o does not apply)."""
    from backends.errors import BackendError
    from backends.server import run_worker
    from backends.settings import WorkerSettings

    refuse_output(ctx)
    overrides = {k: v for k, v in flags.items() if v is not None}
    if worker_id is not None:
        overrides["id"] = worker_id
    settings = WorkerSettings(**overrides)
    refs = _refs(loads)
    files = _files(model_files)
    if not refs and not files:
        raise click.UsageError("nothing to serve: give --load MODEL@VERSION or --model-file")
    try:
        code = run_worker(settings, refs, files)
    except BackendError as exc:  # the worker cannot start as configured (CUDA required, absent)
        raise click.ClickException(exc.message) from None
    sys.exit(code)
