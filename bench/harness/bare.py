"""The bare forwarding proxy (G3's denominator): raw ASGI under uvicorn, one process.

It reads the body, POSTs it to ``BENCH_UPSTREAM`` and answers with the reply's bytes:
no routing, metrics, retries or limits. ``BENCH_CLIENT`` picks the forwarding client:
``forwarder`` (the gateway's own `gateway.forward.Forwarder`, the default), ``aiohttp``
(one pooled session), ``httpx`` (a default ``httpx.AsyncClient``) or ``raw`` (`RawPool`).

    BENCH_UPSTREAM=http://127.0.0.1:P/v2/... python -m bench.harness.bare PORT
"""

from __future__ import annotations

import os
import sys
from typing import Any

from bench.harness.client import RawPool

__all__ = ["make_bare_app", "serve_bare"]


def make_bare_app() -> Any:
    """The ASGI app, configured from ``BENCH_UPSTREAM`` and ``BENCH_CLIENT``."""
    upstream = os.environ["BENCH_UPSTREAM"]
    kind = os.environ.get("BENCH_CLIENT", "forwarder")
    state: dict[str, Any] = {}

    async def post(body: bytes, content_type: bytes) -> tuple[int, bytes, bytes]:
        headers = {"content-type": content_type.decode("latin-1")}
        if kind == "forwarder":
            from gateway.forward import Forwarder

            forwarder = state.get("forwarder")
            if forwarder is None:
                forwarder = state["forwarder"] = Forwarder()
                await forwarder.start()
            reply = await forwarder.send("POST", upstream, body=body, headers=headers, timeout_s=30)
            kinds = [v for k, v in reply.headers if k == b"content-type"]
            return reply.status, reply.body, kinds[0] if kinds else b"application/json"
        if kind == "raw":
            pool = state.get("pool")
            if pool is None:
                pool = state["pool"] = RawPool(upstream)
            return await pool.post(body, content_type)
        if kind == "httpx":
            import httpx

            client = state.get("client")
            if client is None:
                client = state["client"] = httpx.AsyncClient()
            r = await client.post(upstream, content=body, headers=headers)
            return r.status_code, r.content, r.headers.get("content-type", "").encode()
        import aiohttp

        session = state.get("session")
        if session is None:
            session = state["session"] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Content-Type", "Accept-Encoding"),
            )
        async with session.post(upstream, data=body, headers=headers) as response:
            payload = await response.read()
            return response.status, payload, response.headers.get("content-type", "").encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        content_type = b"application/json"
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        status, payload, reply_type = await post(b"".join(chunks), content_type)
        headers = [(b"content-type", reply_type), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return app


def serve_bare(port: int) -> None:
    """The same uvicorn call as ``gateway.server.run_gateway``, on this module's app."""
    import uvicorn

    uvicorn.run(
        "bench.harness.bare:make_bare_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    serve_bare(int(sys.argv[1]))
