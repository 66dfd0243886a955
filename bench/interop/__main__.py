"""``make interop``: third-party tools, unmodified, against a live stack on 127.0.0.1.

    python -m bench.interop [--only perf,kserve,mlserver] [--no-doc]

Starts `bench.interop.stack.Stack` (a gateway on SQLite and two workers), then runs
perf_analyzer 2.51 (`perf_rows`), the KServe SDK clients (`kserve_rows`) and MLServer as
an external server (`mlserver_rows`), each from its own virtualenv under ``.interop/``.
Prints one row per check, writes the table into ``docs/INTEROP.md`` and exits 1 when any
row failed. Every process it started is stopped before it exits.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import ROOT, machine
from bench.interop.kserve_rows import kserve_rows
from bench.interop.mlserver_rows import mlserver_rows
from bench.interop.perf_rows import perf_rows
from bench.interop.report import Rows, render, write_doc
from bench.interop.stack import Stack

DOC = ROOT / "docs" / "INTEROP.md"
PARTS = ("perf", "kserve", "mlserver")


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--only", default=",".join(PARTS), help=f"comma-separated of {PARTS}")
    p.add_argument("--no-doc", action="store_true", help=f"do not rewrite {DOC.name}")
    args = p.parse_args()
    parts = {s.strip() for s in args.only.split(",") if s.strip()}
    root = Path(tempfile.mkdtemp(prefix="mg-interop-"))
    rows = Rows()
    stack = Stack(root)
    started = time.monotonic()
    try:
        stack.start()
        print(f"stack up in {root}: gateway {stack.url}, gRPC {stack.grpc}", flush=True)
        if "perf" in parts:
            perf_rows(stack, rows)
        if "kserve" in parts:
            kserve_rows(stack, rows)
        if "mlserver" in parts:
            mlserver_rows(stack, rows, root)
    except Exception as exc:
        rows.add("runner", "-", "the stack", False, f"{type(exc).__name__}: {exc}")
    finally:
        stack.stop()
    took = time.monotonic() - started
    info = machine()
    header = (
        f"`make interop`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{info['cpus']} CPUs ({info['cpu_model']}), Python {info['python']}; {took:.0f} s"
    )
    table = render(rows.rows, header)
    print("\n" + table)
    if rows.failed:
        print(f"\nprocess logs are kept in {root}:\n{stack.dep.log_tails(3)}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    if not args.no_doc and parts == set(PARTS):
        write_doc(DOC, table)
        print(f"\nwritten to {DOC.relative_to(ROOT)}")
    return 1 if rows.failed else 0


if __name__ == "__main__":
    sys.exit(main())
