"""Read an artifact's ONNX signature in a child process (``python -m registry._signature_process
PATH`` prints it as JSON), so that parsing a big model never holds the gateway's GIL.

``onnx.load`` parses the whole protobuf, initializers included, in C++ under the GIL: on a
300 MiB model that is seconds during which the gateway's event loop cannot run. A child
process also returns the parse's memory to the system when it exits, and can be killed
when it takes too long.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from registry.errors import ArtifactError

__all__ = ["read_signature_isolated"]

#: Exit status of a child that found the artifact invalid (its stderr holds the message).
INVALID = 3


async def read_signature_isolated(path: Path, *, timeout_s: float) -> dict[str, Any]:
    """`registry.signature.read_signature` in a child process; 400 for an invalid model,
    one whose check crashes or takes longer than ``timeout_s``."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        str(path),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), timeout_s)
    except TimeoutError:
        raise ArtifactError(
            f"checking the ONNX model took longer than {timeout_s:g} s "
            f"(MODELGATE_REGISTRY_ARTIFACT_CHECK_TIMEOUT_S)"
        ) from None
    finally:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
    if child.returncode == INVALID:
        raise ArtifactError(err.decode(errors="replace").strip())
    if child.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ArtifactError(
            f"the ONNX check of the artifact failed (exit status {child.returncode}): {tail[0]}"
        )
    result: dict[str, Any] = json.loads(out)
    return result


def _main(argv: list[str]) -> int:
    from registry.signature import read_signature

    # NOTE: the check competes with inference for the CPU; it is the one that can wait.
    with contextlib.suppress(OSError):
        os.nice(10)
    try:
        signature = read_signature(Path(argv[1]))
    except ArtifactError as exc:
        sys.stderr.write(exc.message + "\n")
        return INVALID
    sys.stdout.write(json.dumps(signature))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
