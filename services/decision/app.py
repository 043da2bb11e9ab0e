"""Assembly of the decision service: bundle, Redis, clients, servicer and hot reload."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import grpc

from services.decision.artifact import CURRENT_FILE
from services.decision.bundle import BundleWatcher, load_bundle
from services.decision.clients import ConsentClient, IdentityClient
from services.decision.decider import Decider
from services.decision.decision_log import DecisionLog
from services.decision.explain import DecisionExplainer
from services.decision.feature_store import FeatureStore
from services.decision.features import SECONDS_PER_DAY
from services.decision.outcome_log import OutcomeLog
from services.decision.outcomes import OutcomeRecorder
from services.decision.servicer import DecisionServicer
from services.decision.settings import DecisionSettings
from shared.channels import create_channel
from shared.redis_client import create_redis
from shared.server import GrpcService
from shared.tls import channel_credentials
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = decision_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name


class DecisionService(GrpcService):
    """The gRPC service plus the task that hot-reloads promoted bundles."""

    def __init__(
        self,
        settings: DecisionSettings,
        register: Callable[[grpc.aio.Server], list[str]],
        on_stop: Callable[[], Awaitable[None]],
        watcher: BundleWatcher | None,
    ) -> None:
        super().__init__("decision", settings, register, on_stop=on_stop)
        self.watcher = watcher
        self._watch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving, then start watching the registry for promotions."""
        await super().start()
        if self.watcher is not None and self._watch_task is None:
            self._watch_task = asyncio.create_task(self.watcher.run())

    async def stop(self, grace: float | None = None) -> None:
        """Stop watching, then stop serving."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
        await super().stop(grace)


def create_service(settings: DecisionSettings) -> DecisionService:
    """Build the decision service from settings; call ``start()`` to serve.

    Raises ArtifactNotFoundError (a FileNotFoundError) when no bundle exists at
    settings.model_path, ModelLoadError when the bundle is unusable, and CatalogError
    when its catalog is invalid. Nothing is opened before these checks pass.
    """
    bundle = load_bundle(settings.model_path, settings.catalog_path)

    redis = create_redis(settings.redis_url, settings.redis_timeout_seconds)
    credentials = channel_credentials(settings)
    identity_channel = create_channel(settings.identity_target, credentials)
    consent_channel = create_channel(settings.consent_target, credentials)
    window_seconds = settings.attribution_window_days * SECONDS_PER_DAY
    identity = IdentityClient(identity_channel, settings.identity_deadline_ms / 1000)
    decision_log = DecisionLog(
        redis, settings.decision_record_ttl_seconds, window_seconds
    )
    outcome_log = OutcomeLog(
        redis,
        event_ttl_seconds=settings.event_id_ttl_seconds,
        attribution_window_seconds=window_seconds,
        outcome_ttl_seconds=settings.decision_record_ttl_seconds,
    )
    decider = Decider(
        bundle=bundle,
        features=FeatureStore(redis, settings.event_id_ttl_seconds),
        identity=identity,
        consent=ConsentClient(consent_channel, settings.consent_deadline_ms / 1000),
        decision_log=decision_log,
        features_deadline_seconds=settings.features_deadline_ms / 1000,
        record_deadline_seconds=settings.record_deadline_ms / 1000,
        attribution_window_days=settings.attribution_window_days,
    )
    servicer = DecisionServicer(
        decider,
        OutcomeRecorder(outcome_log, identity),
        DecisionExplainer(decision_log, outcome_log),
    )

    watcher = None
    registry = settings.model_path
    if settings.reload_interval_seconds > 0 and (registry / CURRENT_FILE).is_file():
        watcher = BundleWatcher(
            registry,
            bundle.version,
            settings.reload_interval_seconds,
            decider.swap_bundle,
            settings.catalog_path,
        )

    def register(server: grpc.aio.Server) -> list[str]:
        decision_pb2_grpc.add_DecisionServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    async def close() -> None:
        await identity_channel.close()
        await consent_channel.close()
        await redis.aclose()

    logger.info(
        "decision service built with bundle %s and catalog %s%s",
        bundle.version,
        bundle.catalog.version,
        f", watching {registry / CURRENT_FILE}" if watcher is not None else "",
    )
    return DecisionService(settings, register, close, watcher)
