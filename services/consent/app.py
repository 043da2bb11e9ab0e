"""Assembly of the consent service: Redis clients, domain objects, gRPC server and the
identity event consumer."""

import logging

import grpc
import redis.asyncio as aioredis

from services.consent.durability import DurabilityGuard
from services.consent.erasure import SubjectEraser, SubjectHasher
from services.consent.history import HistoryReader
from services.consent.identity_events import IdentityEventConsumer
from services.consent.jurisdictions import JurisdictionPolicy
from services.consent.reader import ConsentReader
from services.consent.reconciler import IdentityReconciler
from services.consent.recorder import ConsentRecorder
from services.consent.servicer import ConsentServicer
from services.consent.settings import ConsentSettings
from services.consent.verifier import LedgerVerifier
from services.consent.writer import LedgerWriter
from shared.redis_client import create_redis
from shared.server import GrpcService
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = consent_pb2.DESCRIPTOR.services_by_name["ConsentService"].full_name
"""Full name of the gRPC service, as health checks and reflection list it."""


class ConsentService(GrpcService):
    """The consent gRPC server, plus its durability check and identity event consumer.

    start() checks Redis durability and starts the consumer before serving; stop()
    stops the consumer before the server drains and the Redis clients close.
    """

    def __init__(
        self,
        settings: ConsentSettings,
        servicer: ConsentServicer,
        guard: DurabilityGuard,
        consumer: IdentityEventConsumer | None,
        redis_clients: list[aioredis.Redis],
    ) -> None:
        def register(server: grpc.aio.Server) -> list[str]:
            consent_pb2_grpc.add_ConsentServiceServicer_to_server(servicer, server)
            return [SERVICE_NAME]

        super().__init__("consent", settings, register, on_stop=self._close)
        self.servicer = servicer
        self.guard = guard
        self.consumer = consumer
        self._redis_clients = redis_clients

    async def start(self) -> None:
        await self.guard.startup()
        await super().start()
        if self.consumer is not None:
            self.consumer.start()

    async def stop(self, grace: float | None = None) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        await super().stop(grace)

    async def _close(self) -> None:
        for client in self._redis_clients:
            await client.aclose()


def create_service(settings: ConsentSettings) -> ConsentService:
    """Build the consent service; the caller starts it, and stop() closes its clients.

    Raises JurisdictionConfigError before anything is opened when the jurisdictions
    file or the default jurisdiction is invalid.
    """
    policy = JurisdictionPolicy.load(
        settings.jurisdictions_file, settings.default_jurisdiction
    )
    key = settings.subject_hash_key
    hasher = SubjectHasher(None if key is None else key.get_secret_value().encode())
    if not hasher.keyed:
        logger.warning(
            "subject_hash_key is not set, so erasure records are named by a plain "
            "SHA-256 of the subject id; set TRUSTFIRST_CONSENT_SUBJECT_HASH_KEY"
        )

    redis = create_redis(settings.redis_url, settings.redis_timeout_seconds)
    guard = DurabilityGuard(
        redis,
        policy=settings.durability,
        wait_replicas=settings.durability_wait_replicas,
        wait_timeout_ms=settings.durability_wait_timeout_ms,
        recheck_seconds=settings.durability_recheck_seconds,
    )
    writer = LedgerWriter(redis, hasher, guard)
    reader = ConsentReader(redis, policy)
    eraser = SubjectEraser(redis, hasher, guard)
    servicer = ConsentServicer(
        ConsentRecorder(writer),
        reader,
        HistoryReader(redis),
        LedgerVerifier(redis, eraser),
        policy,
    )

    clients = [redis]
    consumer = None
    if settings.identity_events:
        # XREADGROUP blocks for block_ms, so its client waits that much longer for a reply.
        block_seconds = settings.identity_events_block_ms / 1000
        events_redis = create_redis(
            settings.redis_url, settings.redis_timeout_seconds + block_seconds
        )
        clients.append(events_redis)
        consumer = IdentityEventConsumer(
            events_redis,
            IdentityReconciler(writer, reader, eraser, policy),
            stream=settings.identity_events_stream,
            consumer=settings.identity_events_consumer or None,
            batch_size=settings.identity_events_batch,
            block_ms=settings.identity_events_block_ms,
            claim_idle_ms=settings.identity_events_claim_idle_ms,
        )
    return ConsentService(settings, servicer, guard, consumer, clients)
