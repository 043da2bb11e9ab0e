"""Fixtures of the decision tests: a model trained once per session on synthetic data,
and the real identity and consent services in-process, with consent behind a proxy.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from services.consent.app import create_service as create_consent
from services.consent.settings import ConsentSettings
from services.decision.app import create_service
from services.decision.catalog import load_catalog
from services.decision.settings import DecisionSettings
from services.decision.train import train_model
from services.identity.app import create_service as create_identity
from services.identity.settings import IdentitySettings
from shared.server import GrpcService
from tests.decision.proxy import ForwardingProxy
from tests.decision.synthetic import write_synthetic_cdnow
from trustfirst.consent.v1 import consent_pb2_grpc
from trustfirst.decision.v1 import decision_pb2_grpc
from trustfirst.identity.v1 import identity_pb2_grpc

CHECK_CONSENT_METHOD = "/trustfirst.consent.v1.ConsentService/CheckConsent"
IDENTITY_HASH_KEY = "decision-tests-identity-key-0123456789abcdef"


@pytest.fixture(scope="session")
def synthetic_cdnow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded CDNOW-format file of 800 customers."""
    return write_synthetic_cdnow(tmp_path_factory.mktemp("cdnow") / "synthetic.txt")


def catalog_with_policy(
    holdout_share: float = 0.0,
    exploration_share: float = 0.0,
    salt: str = "tests",
    text: str | None = None,
) -> str:
    """Return the packaged catalog's text with its [policy] table replaced."""
    source = text if text is not None else load_catalog().source.decode()
    start = source.index("[policy]")
    end = source.index("[[caps]]")
    policy = (
        f'[policy]\nholdout_share = {holdout_share}\nholdout_salt = "{salt}"\n'
        f"exploration_share = {exploration_share}\n\n"
    )
    return source[:start] + policy + source[end:]


def write_catalog(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def model_root(synthetic_cdnow: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with one bundle (no holdout, no exploration) and CURRENT naming it."""
    root = tmp_path_factory.mktemp("models")
    catalog = write_catalog(
        tmp_path_factory.mktemp("catalogs"), "deterministic.toml", catalog_with_policy()
    )
    train_model(synthetic_cdnow, root, seed=3, catalog_path=catalog)
    return root


@dataclass
class DecisionStack:
    """A decision service wired to real identity and consent, with consent behind a proxy."""

    service: GrpcService
    stub: decision_pb2_grpc.DecisionServiceAsyncStub
    proxy: ForwardingProxy
    identity: identity_pb2_grpc.IdentityServiceAsyncStub
    consent: consent_pb2_grpc.ConsentServiceAsyncStub
    redis: aioredis.Redis

    @property
    def consent_checks(self) -> int:
        return self.proxy.calls[CHECK_CONSENT_METHOD]


def decision_settings(
    redis_url: str, model_path: Path, **overrides: Any
) -> DecisionSettings:
    """Settings of a test decision service on a free port; overrides set any field."""
    values: dict[str, Any] = {
        "port": 0,
        "redis_url": redis_url,
        "model_path": model_path,
        "grace_seconds": 0,
        # Generous, so a busy test machine does not turn a check into a timeout; the
        # deadline test sets its own.
        "consent_deadline_ms": 2000,
        "identity_deadline_ms": 2000,
        "features_deadline_ms": 2000,
    }
    values.update(overrides)
    return DecisionSettings(**values)


@asynccontextmanager
async def running_decision(
    settings: DecisionSettings,
) -> AsyncIterator[tuple[GrpcService, decision_pb2_grpc.DecisionServiceAsyncStub]]:
    """Start a decision service with settings and yield it with a stub on it."""
    service = create_service(settings)
    await service.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        yield service, decision_pb2_grpc.DecisionServiceStub(channel)
    finally:
        await channel.close()
        await service.stop(grace=0)


@pytest.fixture(scope="session")
async def identity_backend(redis_url: str) -> AsyncIterator[GrpcService]:
    """The real identity service, in-process on a free port."""
    service = create_identity(
        IdentitySettings(
            port=0,
            redis_url=redis_url,
            hash_key=SecretStr(IDENTITY_HASH_KEY),
            hash_key_file=None,
            grace_seconds=0,
        )
    )
    await service.start()
    yield service
    await service.stop(grace=0)


@pytest.fixture(scope="session")
async def consent_backend(redis_url: str) -> AsyncIterator[GrpcService]:
    """The real consent service, in-process on a free port."""
    service = create_consent(
        ConsentSettings(
            port=0,
            redis_url=redis_url,
            grace_seconds=0,
            durability="warn",
            identity_events=False,
        )
    )
    await service.start()
    yield service
    await service.stop(grace=0)


@pytest.fixture
async def stack(
    redis_client: aioredis.Redis,
    redis_url: str,
    model_root: Path,
    identity_backend: GrpcService,
    consent_backend: GrpcService,
) -> AsyncIterator[DecisionStack]:
    """A fresh decision service and proxy per test; Redis is empty when the test starts."""
    proxy = ForwardingProxy(f"127.0.0.1:{consent_backend.port}")
    await proxy.start()
    settings = decision_settings(
        redis_url,
        model_root,
        identity_target=f"127.0.0.1:{identity_backend.port}",
        consent_target=proxy.target,
    )
    identity_channel = grpc.aio.insecure_channel(f"127.0.0.1:{identity_backend.port}")
    consent_channel = grpc.aio.insecure_channel(f"127.0.0.1:{consent_backend.port}")
    try:
        async with running_decision(settings) as (service, stub):
            yield DecisionStack(
                service=service,
                stub=stub,
                proxy=proxy,
                identity=identity_pb2_grpc.IdentityServiceStub(identity_channel),
                consent=consent_pb2_grpc.ConsentServiceStub(consent_channel),
                redis=redis_client,
            )
    finally:
        await identity_channel.close()
        await consent_channel.close()
        await proxy.stop()


def derive_bundle(
    model_root: Path, registry: Path, version: str, catalog_text: str
) -> Path:
    """Copy the current bundle of model_root into registry as version, with another
    catalog; return the new folder. CURRENT in registry is left as it is.
    """
    source = model_root / (model_root / "CURRENT").read_text().strip()
    target = registry / version
    target.mkdir(parents=True)
    (target / "model.txt").write_bytes((source / "model.txt").read_bytes())
    manifest = json.loads((source / "manifest.json").read_text())
    manifest["version"] = version
    (target / "manifest.json").write_text(json.dumps(manifest))
    (target / "catalog.toml").write_text(catalog_text)
    return target
