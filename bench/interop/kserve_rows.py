"""The KServe SDK 0.21 REST and gRPC clients through the gateway: `kserve_client` run by
the KServe virtualenv's Python, one row per check it prints."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bench.harness.tools import tool_bin
from bench.interop.report import Rows
from bench.interop.stack import MODEL, Stack

__all__ = ["kserve_rows"]

TOOL = "KServe SDK"
CLIENT = Path(__file__).with_name("kserve_client.py")
GRPC_CHECKS = ("gRPC live", "gRPC ready (server, model)", "gRPC infer JSON", "gRPC infer binary")


def kserve_rows(stack: Stack, rows: Rows) -> None:
    """Every KServe row; a client that dies leaves a failing row with its last line."""
    python = tool_bin("kserve", "python")
    args = [str(python), str(CLIENT), MODEL, stack.url, *([stack.grpc] if stack.grpc else [])]
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)
        out, err, rc = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired:
        out, err, rc = "", "timed out after 180 s", 124
    version = "?"
    for line in out.splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "version" in item:
            version = item["version"]
        else:
            rows.add(TOOL, version, item["what"], item["ok"], item["detail"])
    if rc != 0:
        last = (err.strip().splitlines() or ["no output"])[-1]
        rows.add(TOOL, version, "client run", False, f"exit {rc}: {last}")
    if not stack.grpc:
        for what in GRPC_CHECKS:
            rows.add(TOOL, version, what, False, "the gateway has no gRPC port yet (not landed)")
