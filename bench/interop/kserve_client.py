"""The KServe SDK's clients against the gateway. Run by the KServe virtualenv's Python
(``.interop/kserve/bin/python``), not the project's, so it imports nothing of the project:

    python bench/interop/kserve_client.py MODEL http://H:P [GRPC_H:P]

Prints one JSON object per check on stdout: ``{"what", "ok", "detail"}``. The model is
``output = input * 2`` over ``[batch, 4]`` FP32 (`backends.synthetic.scale_model`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import version

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput

ROW = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)


def emit(what: str, ok: bool, detail: str) -> None:
    print(json.dumps({"what": what, "ok": ok, "detail": detail}), flush=True)


async def check(what: str, body: Callable[[], Awaitable[str]]) -> None:
    try:
        detail = await body()
    except Exception as exc:
        emit(what, False, f"{type(exc).__name__}: {exc}"[:300])
    else:
        emit(what, True, detail)


def request(model: str, binary: bool, model_version: str | None = None) -> InferRequest:
    tensor = InferInput("input", list(ROW.shape), "FP32")
    if binary:
        tensor.set_data_from_numpy(ROW, binary_data=True)
        outputs = [RequestedOutput("output", {"binary_data": True})]
    else:
        tensor.set_data_from_numpy(ROW, binary_data=False)
        outputs = None
    return InferRequest(
        model_name=model,
        infer_inputs=[tensor],
        request_outputs=outputs,
        model_version=model_version,
    )


def verify(response: object, want_version: str | None = None, served: str | None = None) -> str:
    """The served version (``served``, else the response's ``model_version``) and the
    output, after checking it is the input doubled."""
    out = response.outputs[0].as_numpy()  # type: ignore[attr-defined]
    served = served or response.model_version  # type: ignore[attr-defined]
    if not np.allclose(np.asarray(out, dtype=np.float32).reshape(ROW.shape), ROW * 2):
        raise AssertionError(f"output {out!r} is not input * 2")
    if want_version and not str(served).startswith(want_version):
        raise AssertionError(f"served version {served!r} does not match {want_version!r}")
    return f"model_version {served}, output {np.asarray(out).ravel().tolist()}"


async def rest_checks(url: str, model: str) -> None:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))

    async def live() -> str:
        assert await client.is_server_live(url) is True
        return "is_server_live True"

    async def ready() -> str:
        assert await client.is_server_ready(url) is True
        assert await client.is_model_ready(url, model) is True
        return "is_server_ready True, is_model_ready True"

    # NOTE: the REST client's InferResponse drops the body's model_version; the served
    # version is read from the X-Model-Version response header instead.
    async def infer(binary: bool, headers: dict[str, str] | None = None) -> tuple[object, dict]:
        seen: dict[str, str] = {}
        got = await client.infer(
            url, request(model, binary), model, headers=headers, response_headers=seen
        )
        return got, seen

    async def infer_json() -> str:
        got, seen = await infer(False)
        checked = verify(got, served=seen.get("x-model-version"))
        return f"{checked}, X-Backend {seen.get('x-backend')}"

    async def infer_binary() -> str:
        got, seen = await infer(True)
        return f"{verify(got, served=seen.get('x-model-version'))} (binary in and out)"

    async def infer_range() -> str:
        got, seen = await infer(True, {"X-Model-Version": "^1.0 <1.1"})
        checked = verify(got, "1.0.", served=seen.get("x-model-version"))
        return f"X-Model-Version '^1.0 <1.1': {checked}"

    try:
        await check("REST live", live)
        await check("REST ready (server, model)", ready)
        await check("REST infer JSON", infer_json)
        await check("REST infer binary", infer_binary)
        await check("REST infer, version range header", infer_range)
    finally:
        await client.close()


async def grpc_checks(url: str, model: str) -> None:
    client = InferenceGRPCClient(url, timeout=30, retries=0)

    async def live() -> str:
        assert await client.is_server_live() is True
        return "is_server_live True"

    async def ready() -> str:
        assert await client.is_server_ready() is True
        assert await client.is_model_ready(model) is True
        return "is_server_ready True, is_model_ready True"

    async def infer_json() -> str:
        return f"{verify(await client.infer(request(model, False)))} (typed contents)"

    async def infer_binary() -> str:
        return f"{verify(await client.infer(request(model, True)))} (raw_input_contents)"

    async def infer_range() -> str:
        got = await client.infer(request(model, True, model_version="^1.0"))
        return f"model_version '^1.0': {verify(got, '1.')}"

    async def infer_metadata() -> str:
        got = await client.infer(request(model, True), headers=[("x-model-version", "~1.0")])
        return f"metadata x-model-version '~1.0': {verify(got, '1.0.')}"

    try:
        await check("gRPC live", live)
        await check("gRPC ready (server, model)", ready)
        await check("gRPC infer JSON", infer_json)
        await check("gRPC infer binary", infer_binary)
        await check("gRPC infer, model_version range", infer_range)
        await check("gRPC infer, x-model-version metadata", infer_metadata)
    finally:
        await client.close()


async def main() -> int:
    # NOTE: positional arguments only: importing kserve parses sys.argv with its model
    # server's parser, which refuses an abbreviation of its own options (``--grpc``).
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("model")
    p.add_argument("rest", help="the gateway's base URL, http://H:P")
    p.add_argument("grpc", nargs="?", help="the gateway's gRPC H:P (omitted: not served)")
    args = p.parse_args()
    print(json.dumps({"version": version("kserve")}), flush=True)
    await rest_checks(args.rest, args.model)
    if args.grpc:
        await grpc_checks(args.grpc, args.model)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
