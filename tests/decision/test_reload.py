"""Model registry and hot reload: promotions under load swap model, catalog and rules
together, and no decision mixes two bundles.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from services.decision.artifact import point_current
from services.decision.bundle import Bundle, load_bundle
from services.decision.decision_log import DecisionLog
from services.decision.features import DECISION_FEATURE_NAMES
from services.decision.model import ModelLoadError
from services.decision.registry import list_versions, main, promote
from services.decision.scoring import score_rows
from tests.decision.conftest import (
    DecisionStack,
    catalog_with_policy,
    decision_settings,
    derive_bundle,
    running_decision,
)
from tests.decision.test_service import MARKETING, PERSONALISATION, _record_consent
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc

PB = decision_pb2
EMAIL = consent_pb2.CHANNEL_EMAIL
T0 = 899_251_200


def _two_bundles(model_root: Path, registry: Path) -> tuple[Bundle, Bundle]:
    text = catalog_with_policy()
    # Bundle B charges more for the content mail, so its catalog and scores differ.
    content_cost = 'cost_cents = 1\ndescription = "New arrivals'
    assert content_cost in text
    changed = text.replace(content_cost, 'cost_cents = 40\ndescription = "New arrivals')
    first = derive_bundle(model_root, registry, "v-a", text)
    second = derive_bundle(model_root, registry, "v-b", changed)
    point_current(registry, "v-a")
    return load_bundle(first), load_bundle(second)


@dataclass
class _Load:
    responses: list[decision_pb2.DecideResponse] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def _drive(
    stub: decision_pb2_grpc.DecisionServiceAsyncStub,
    stop: asyncio.Event,
    load: _Load,
    worker: int,
) -> None:
    number = 0
    while not stop.is_set():
        request = PB.DecideRequest(
            profile_id=f"load-{worker}-{number % 5}",
            touchpoint="newsletter",
            channel=EMAIL,
        )
        # A new week per request, so the weekly email cap never silences the load.
        request.context.event_time.FromSeconds(T0 + number * 8 * 86_400)
        try:
            load.responses.append(await stub.Decide(request, timeout=10))
        except grpc.aio.AioRpcError as error:
            load.errors.append(error.code().name)
        number += 1


async def _wait_for(
    stub: decision_pb2_grpc.DecisionServiceAsyncStub, version: str
) -> None:
    for _ in range(500):
        reply = await stub.ListActions(PB.ListActionsRequest())
        if reply.bundle_version == version:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"bundle {version} was not loaded")


async def test_promotions_under_load(
    stack: DecisionStack, redis_url: str, model_root: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    first, second = _two_bundles(model_root, registry)
    for worker in range(4):
        for number in range(5):
            await _record_consent(
                stack,
                f"load-{worker}-{number}",
                [(MARKETING, EMAIL), (PERSONALISATION, EMAIL)],
            )
    settings = decision_settings(
        redis_url,
        registry,
        consent_target=stack.proxy.target,
        reload_interval_seconds=0.02,
    )
    load = _Load()
    stop = asyncio.Event()
    async with running_decision(settings) as (_, stub):
        workers = [asyncio.create_task(_drive(stub, stop, load, w)) for w in range(4)]
        for version in ("v-b", "v-a", "v-b"):
            await asyncio.sleep(0.3)
            promote(registry, version)
            await _wait_for(stub, version)
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*workers)

    pairs = {(r.model_version, r.catalog_version) for r in load.responses}
    assert load.errors == []
    assert pairs == {
        ("v-a", first.catalog.version),
        ("v-b", second.catalog.version),
    }
    await _check_records_match(stack, load.responses, {"v-a": first, "v-b": second})


async def _check_records_match(
    stack: DecisionStack,
    responses: list[decision_pb2.DecideResponse],
    bundles: dict[str, Bundle],
) -> None:
    """Recompute each decision's scores with the bundle its response names."""
    log = DecisionLog(stack.redis, 60)
    candidates = {
        version: bundle.catalog.candidates(EMAIL, "newsletter")
        for version, bundle in bundles.items()
    }
    for response in responses:
        record = await log.load(response.profile_id, response.decision_id)
        assert record is not None
        assert record["model_version"] == response.model_version
        assert record["catalog_version"] == response.catalog_version
        features = np.array(
            [
                [
                    np.nan if record["features"][n] is None else record["features"][n]
                    for n in DECISION_FEATURE_NAMES
                ]
            ]
        )
        bundle = bundles[response.model_version]
        _, scores = score_rows(bundle, features, candidates[response.model_version])
        assert [c.score for c in response.candidates] == pytest.approx(
            scores[0].tolist()
        )


async def test_broken_promotion_keeps_serving(
    stack: DecisionStack, redis_url: str, model_root: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    _two_bundles(model_root, registry)
    broken = derive_bundle(model_root, registry, "v-broken", catalog_with_policy())
    (broken / "model.txt").write_text("not a model")
    settings = decision_settings(
        redis_url,
        registry,
        consent_target=stack.proxy.target,
        reload_interval_seconds=0.02,
    )

    async with running_decision(settings) as (_, stub):
        point_current(registry, "v-broken")
        await asyncio.sleep(0.3)
        actions = await stub.ListActions(PB.ListActionsRequest())
        reply = await stub.Decide(
            PB.DecideRequest(profile_id="p-1", touchpoint="newsletter", channel=EMAIL)
        )

    assert actions.bundle_version == "v-a"
    assert reply.model_version == "v-a"


def test_promote_rejects_broken_bundle(model_root: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    _two_bundles(model_root, registry)
    broken = derive_bundle(model_root, registry, "v-broken", catalog_with_policy())
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["model_sha256"] = "0" * 64
    (broken / "manifest.json").write_text(json.dumps(manifest))

    with pytest.raises(ModelLoadError):
        promote(registry, "v-broken")

    assert (registry / "CURRENT").read_text().strip() == "v-a"


def test_registry_list_and_promote(
    model_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry"
    _two_bundles(model_root, registry)

    main(["promote", str(registry), "v-b"])
    main(["list", str(registry)])

    output = capsys.readouterr().out
    assert "promoted v-b" in output
    assert [v.version for v in list_versions(registry) if v.current] == ["v-b"]
