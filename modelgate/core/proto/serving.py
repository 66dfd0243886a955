"""What the gateway's and the worker's gRPC servers share: guarded call behaviours and the
bind.

A guarded call turns a `ModelgateError` into an abort with `status.grpc_code` of its HTTP
status and its own message, lets grpcio's own aborts through, and logs anything else and
answers INTERNAL with ``internal`` (grpcio would send the exception's text as UNKNOWN).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc

from modelgate.core.errors import ModelgateError
from modelgate.core.proto.status import grpc_code

__all__ = ["guarded", "guarded_stream", "serve"]


def guarded(
    method: str, call: Callable[[Any, Any], Awaitable[Any]], log: logging.Logger, internal: str
) -> Callable[[Any, Any], Awaitable[Any]]:
    """``call`` (a unary behaviour) with its errors rendered as the module says."""

    async def behaviour(request: Any, context: Any) -> Any:
        try:
            return await call(request, context)
        except ModelgateError as exc:
            await context.abort(grpc_code(exc.status_code), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unhandled error in gRPC %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, internal)

    return behaviour


def guarded_stream(
    method: str, call: Callable[[Any, Any], AsyncIterator[Any]], log: logging.Logger, internal: str
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    """``call`` (a streaming behaviour) with its errors rendered as the module says."""

    async def behaviour(requests: Any, context: Any) -> AsyncIterator[Any]:
        try:
            async for response in call(requests, context):
                yield response
        except ModelgateError as exc:
            await context.abort(grpc_code(exc.status_code), exc.message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unhandled error in gRPC %s", method)
            await context.abort(grpc.StatusCode.INTERNAL, internal)

    return behaviour


async def serve(
    handler: grpc.GenericRpcHandler,
    host: str,
    port: int,
    options: Sequence[tuple[str, Any]] = (),
) -> tuple[grpc.aio.Server, int]:
    """Start a server for ``handler`` on ``host:port`` (0: a free port); returns it and the
    bound port. Raises `OSError` naming the address when it cannot bind.

    NOTE: ``grpc.so_reuseport`` is off (grpcio turns it on by default on Linux): a port
    another process holds must fail the start, not split the traffic with it.
    """
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *options])
    server.add_generic_rpc_handlers((handler,))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise OSError(f"cannot serve gRPC on {address}: {exc}") from None
    if not bound:
        raise OSError(f"cannot serve gRPC on {address}: the port is taken")
    await server.start()
    return server, bound
