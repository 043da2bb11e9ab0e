"""Assembly of the identity service: Redis client, graph, servicer and gRPC server."""

import logging

import grpc

from services.identity.graph import IdentityGraph
from services.identity.hashing import IdentifierHasher, load_hash_key
from services.identity.keys import GRAPH_PREFIX
from services.identity.normalise import Normaliser
from services.identity.servicer import SERVICE_NAME, IdentityServicer
from services.identity.settings import IdentitySettings
from shared.redis_client import create_redis
from shared.server import GrpcService
from trustfirst.identity.v1 import identity_pb2_grpc

logger = logging.getLogger(__name__)


def create_service(settings: IdentitySettings) -> GrpcService:
    """Build the identity service; ``await service.start()`` serves it.

    Raises HashKeyError before anything is opened when the identifier hash key is missing
    or shorter than 32 bytes. The Redis client is closed when the service stops.
    """
    hasher = IdentifierHasher(load_hash_key(settings))
    normaliser = Normaliser(settings.phone_default_region)

    redis = create_redis(settings.redis_url, settings.redis_timeout_seconds)
    graph = IdentityGraph(redis, events_max_length=settings.events_max_length)
    servicer = IdentityServicer(graph, normaliser, hasher)

    def register(server: grpc.aio.Server) -> list[str]:
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    async def close() -> None:
        await redis.aclose()

    logger.info(
        "identity graph configured",
        extra={
            "key_prefix": GRAPH_PREFIX,
            "phone_default_region": settings.phone_default_region or None,
        },
    )
    return GrpcService("identity", settings, register, on_stop=close)
