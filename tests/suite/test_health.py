"""Each service, started as its own process, serves health and reflection."""

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.decision.train import train_model
from shared.embedded_redis import EmbeddedRedis
from suite.launcher import Suite, start_suite
from tests.decision.synthetic import write_synthetic_cdnow

SERVICE_NAMES = {
    "identity": "trustfirst.identity.v1.IdentityService",
    "consent": "trustfirst.consent.v1.ConsentService",
    "decision": "trustfirst.decision.v1.DecisionService",
}


@pytest.fixture(scope="module")
def suite(
    tmp_path_factory: pytest.TempPathFactory, durable_redis: EmbeddedRedis
) -> Iterator[Suite]:
    data_dir = tmp_path_factory.mktemp("suite")
    data = write_synthetic_cdnow(data_dir / "cdnow.txt", customers=300)
    train_model(data, data_dir / "models")
    with start_suite(data_dir, data_dir / "models", durable_redis.url) as running:
        yield running


def _reflected_services(target: str) -> set[str]:
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
    return {service.name for service in replies[0].list_services_response.service}


@pytest.mark.parametrize("name", sorted(SERVICE_NAMES))
def test_health_serving(suite: Suite, name: str) -> None:
    with grpc.insecure_channel(suite.target(name)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(
            health_pb2.HealthCheckRequest(service=SERVICE_NAMES[name]), timeout=5
        )

    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("name", sorted(SERVICE_NAMES))
def test_reflection_lists_service(suite: Suite, name: str) -> None:
    services = _reflected_services(suite.target(name))

    assert SERVICE_NAMES[name] in services
    assert "grpc.health.v1.Health" in services


def test_suite_logs_per_service(suite: Suite) -> None:
    logs = {name: Path(service.log_path) for name, service in suite.services.items()}

    assert sorted(logs) == ["consent", "decision", "identity"]
    assert all(path.exists() for path in logs.values())
