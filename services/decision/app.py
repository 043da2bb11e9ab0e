"""Assembly of the decision service: model, catalog, Redis, clients and servicer."""

import logging

import grpc

from services.decision.catalog import load_catalog
from services.decision.clients import ConsentClient, IdentityClient
from services.decision.decider import Decider
from services.decision.decision_log import DecisionLog
from services.decision.feature_store import FeatureStore
from services.decision.model import load_model
from services.decision.outcomes import OutcomeRecorder
from services.decision.servicer import DecisionServicer
from services.decision.settings import DecisionSettings
from shared.channels import create_channel
from shared.redis_client import create_redis
from shared.server import GrpcService
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = decision_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name


def create_service(settings: DecisionSettings) -> GrpcService:
    """Build the decision service from settings; call ``start()`` to serve.

    Raises ArtifactNotFoundError (a FileNotFoundError) when no model artifact exists at
    settings.model_path, ModelLoadError when the artifact is unusable, and CatalogError
    when the catalog is invalid. Nothing is opened before these checks pass.
    """
    model = load_model(settings.model_path)
    catalog = load_catalog(settings.catalog_path)

    redis = create_redis(settings.redis_url, settings.redis_timeout_seconds)
    identity_channel = create_channel(settings.identity_target)
    consent_channel = create_channel(settings.consent_target)
    features = FeatureStore(redis, settings.event_id_ttl_seconds)
    identity = IdentityClient(identity_channel, settings.identity_deadline_ms / 1000)
    decider = Decider(
        catalog=catalog,
        model=model,
        features=features,
        identity=identity,
        consent=ConsentClient(consent_channel, settings.consent_deadline_ms / 1000),
        decision_log=DecisionLog(redis, settings.decision_record_ttl_seconds),
        features_deadline_seconds=settings.features_deadline_ms / 1000,
    )
    servicer = DecisionServicer(decider, OutcomeRecorder(features, identity))

    def register(server: grpc.aio.Server) -> list[str]:
        decision_pb2_grpc.add_DecisionServiceServicer_to_server(servicer, server)
        return [SERVICE_NAME]

    async def close() -> None:
        await identity_channel.close()
        await consent_channel.close()
        await redis.aclose()

    logger.info(
        "decision service built with model %s and catalog %s",
        model.version,
        catalog.version,
    )
    return GrpcService("decision", settings, register, on_stop=close)
