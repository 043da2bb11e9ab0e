"""Assembly of the consent service: Redis client, recorder, reader and gRPC server."""

import grpc

from services.consent.reader import ConsentReader
from services.consent.recorder import ConsentRecorder
from services.consent.servicer import ConsentServicer
from services.consent.settings import ConsentSettings
from shared.redis_client import create_redis
from shared.server import GrpcService
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc

SERVICE_NAME = consent_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name
"""Full name of the gRPC service, as health checks and reflection list it."""


def create_service(settings: ConsentSettings) -> GrpcService:
    """Build the consent service. The caller starts it, and stop() closes its Redis client."""
    redis = create_redis(settings.redis_url, settings.redis_timeout_seconds)
    servicer = ConsentServicer(ConsentRecorder(redis), ConsentReader(redis))

    def register(server: grpc.aio.Server) -> list[str]:
        consent_pb2_grpc.add_ConsentServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    async def close() -> None:
        await redis.aclose()

    return GrpcService("consent", settings, register, on_stop=close)
