"""A bare asyncio gRPC server with only the health service, the round-trip floor.

Usage: python -m bench.health_server PORT

It serves on 127.0.0.1:PORT until SIGTERM or SIGINT. It has no interceptor, reflection
or other service, so a Check call measures gRPC in Python and nothing else.
"""

import asyncio
import signal
import sys

import grpc
from grpc_health.v1 import health, health_pb2_grpc


async def serve(port: int) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    if server.add_insecure_port(f"127.0.0.1:{port}") == 0:
        raise SystemExit(f"could not bind 127.0.0.1:{port}")
    await server.start()

    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_requested.set)
    await stop_requested.wait()
    await server.stop(grace=1)


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.health_server PORT")
    asyncio.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()
