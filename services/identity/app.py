"""Assembly of the identity service: Redis client, graph, servicer and gRPC server."""

import logging

import grpc

from services.identity.graph import IdentityGraph
from services.identity.hashing import IdentifierHasher, load_hash_key
from services.identity.keys import GRAPH_PREFIX
from services.identity.normalise import Normaliser
from services.identity.quarantine import QuarantineRegistry
from services.identity.rules import load_rules
from services.identity.servicer import SERVICE_NAME, IdentityServicer
from services.identity.settings import IdentitySettings
from services.identity.subject_rights import SubjectRights
from services.identity.validation import IdentifierReader
from shared.redis_client import create_redis, is_cluster_url
from shared.server import GrpcService
from trustfirst.identity.v1 import identity_pb2_grpc

logger = logging.getLogger(__name__)


def create_service(settings: IdentitySettings) -> GrpcService:
    """Build the identity service; ``await service.start()`` serves it.

    Raises HashKeyError before anything is opened when the identifier hash key is missing
    or shorter than 32 bytes, and RulesError when the rules file is unusable. The Redis
    client is closed when the service stops.
    """
    hasher = IdentifierHasher(load_hash_key(settings))
    rules = load_rules(settings, settings.rules_file)
    reader = IdentifierReader(Normaliser(settings.phone_default_region), hasher, rules)

    redis = create_redis(
        settings.redis_url,
        settings.redis_timeout_seconds,
        cluster=settings.redis_cluster,
    )
    graph = IdentityGraph(redis, rules, events_max_length=settings.events_max_length)
    subject_rights = SubjectRights(
        redis,
        tombstone_ttl_seconds=rules.tombstone_ttl_seconds,
        events_max_length=settings.events_max_length,
    )
    servicer = IdentityServicer(
        graph, reader, subject_rights, QuarantineRegistry(redis)
    )

    def register(server: grpc.aio.Server) -> list[str]:
        identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    async def close() -> None:
        await redis.aclose()

    logger.info(
        "identity graph configured",
        extra={
            "key_prefix": GRAPH_PREFIX,
            "redis_cluster": settings.redis_cluster
            or is_cluster_url(settings.redis_url),
            "phone_default_region": settings.phone_default_region or None,
            "kind_priority": [str(kind) for kind in rules.priority],
            "unique_kinds": [
                str(rule.kind) for rule in rules.kinds.values() if rule.unique
            ],
            "quarantine_threshold": rules.quarantine_threshold,
        },
    )
    return GrpcService("identity", settings, register, on_stop=close)
