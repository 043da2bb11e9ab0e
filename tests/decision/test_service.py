"""Decide, RecordOutcome and ListActions over gRPC, with the real identity and consent
services and a real Redis.
"""

from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2

from services.consent.app import create_service as create_consent
from services.consent.settings import ConsentSettings
from services.decision.app import create_service
from services.decision.artifact import ArtifactNotFoundError
from services.decision.decision_log import DecisionLog, decision_key
from services.decision.feature_store import FeatureStore
from services.decision.features import PurchaseAggregate
from shared.embedded_redis import free_port
from shared.server import GrpcService
from tests.decision.conftest import (
    DecisionStack,
    decision_settings,
    running_decision,
)
from tests.decision.proxy import ForwardingProxy
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2
from trustfirst.identity.v1 import identity_pb2

PB = decision_pb2
PERSONALISATION = consent_pb2.PURPOSE_PERSONALISATION
MARKETING = consent_pb2.PURPOSE_MARKETING
IN_APP = consent_pb2.CHANNEL_IN_APP
EMAIL = consent_pb2.CHANNEL_EMAIL
CAROUSEL = "app-recommendation-carousel"


async def _record_consent(
    stack: DecisionStack,
    profile_id: str,
    pairs: list[tuple[int, int]],
    action: int = consent_pb2.CONSENT_ACTION_GRANT,
) -> None:
    await stack.consent.RecordConsent(
        consent_pb2.RecordConsentRequest(
            subject_id=profile_id,
            changes=[
                consent_pb2.ConsentChange(purpose=p, channel=c, action=action)  # type: ignore[arg-type]
                for p, c in pairs
            ],
            source="decision-tests",
            notice_version="2026-01",
        )
    )


async def _resolve(stack: DecisionStack, email: str) -> str:
    reply = await stack.identity.Resolve(
        identity_pb2.ResolveRequest(
            identifiers=[
                identity_pb2.Identifier(
                    kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value=email
                )
            ],
            source="decision-tests",
        )
    )
    return reply.profile_id


def _in_app(
    profile_id: str = "p-ann", touchpoint: str = "home"
) -> decision_pb2.DecideRequest:
    return PB.DecideRequest(
        profile_id=profile_id, touchpoint=touchpoint, channel=IN_APP
    )


def _statuses(reply: decision_pb2.DecideResponse) -> dict[str, str]:
    return {c.action_id: PB.CandidateStatus.Name(c.status) for c in reply.candidates}


def _field_violations(error: grpc.aio.AioRpcError) -> list[str]:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad_request = error_details_pb2.BadRequest()
                if detail.Unpack(bad_request):
                    return [v.field for v in bad_request.field_violations]
    return []


async def test_decide_without_consent(stack: DecisionStack) -> None:
    reply = await stack.stub.Decide(_in_app())

    assert reply.silent is True
    assert reply.silence_reason == PB.SILENCE_REASON_NO_CONSENT
    assert reply.action_id == ""
    assert _statuses(reply) == {CAROUSEL: "CANDIDATE_STATUS_NO_CONSENT"}
    assert reply.consent_token != ""


async def test_decide_after_grant(stack: DecisionStack, model_root: Path) -> None:
    await _record_consent(stack, "p-ann", [(PERSONALISATION, IN_APP)])

    reply = await stack.stub.Decide(_in_app())

    assert reply.silent is False
    assert reply.action_id == CAROUSEL
    assert reply.silence_reason == PB.SILENCE_REASON_UNSPECIFIED
    assert _statuses(reply) == {CAROUSEL: "CANDIDATE_STATUS_CHOSEN"}
    assert reply.candidates[0].score > 0
    assert reply.profile_id == "p-ann"
    assert reply.model_version == (model_root / "CURRENT").read_text().strip()
    assert 0.0 < reply.repeat_probability < 1.0


async def test_decide_after_withdrawal(stack: DecisionStack) -> None:
    await _record_consent(stack, "p-ann", [(PERSONALISATION, IN_APP)])
    granted = await stack.stub.Decide(_in_app())
    await _record_consent(
        stack, "p-ann", [(PERSONALISATION, IN_APP)], consent_pb2.CONSENT_ACTION_WITHDRAW
    )

    withdrawn = await stack.stub.Decide(_in_app())

    assert granted.action_id == CAROUSEL
    assert withdrawn.silent is True
    assert withdrawn.silence_reason == PB.SILENCE_REASON_NO_CONSENT
    assert withdrawn.consent_token != granted.consent_token


async def test_decide_partial_consent(stack: DecisionStack) -> None:
    # The discount needs marketing and personalisation; the new-arrivals mail only marketing.
    await _record_consent(stack, "p-ann", [(MARKETING, EMAIL)])

    reply = await stack.stub.Decide(
        PB.DecideRequest(profile_id="p-ann", touchpoint="newsletter", channel=EMAIL)
    )

    assert _statuses(reply)["email-discount-10pct"] == "CANDIDATE_STATUS_NO_CONSENT"
    assert _statuses(reply)["email-new-arrivals"] == "CANDIDATE_STATUS_CHOSEN"
    assert reply.action_id == "email-new-arrivals"


async def test_discount_scores_lower_for_buyer(stack: DecisionStack) -> None:
    day = 86_400
    as_of = 900_000_000
    # Same mean order value (4000 cents): a frequent recent buyer and a lapsed one-time buyer.
    await FeatureStore(stack.redis, 60).put_many(
        {
            "p-frequent": PurchaseAggregate(
                10, 40_000, 20, as_of - 300 * day, as_of - 5 * day, 4000
            ),
            "p-lapsed": PurchaseAggregate(
                1, 4000, 1, as_of - 300 * day, as_of - 300 * day, 4000
            ),
        }
    )
    replies = {}
    for profile_id in ("p-frequent", "p-lapsed"):
        await _record_consent(
            stack, profile_id, [(MARKETING, EMAIL), (PERSONALISATION, EMAIL)]
        )
        request = PB.DecideRequest(
            profile_id=profile_id, touchpoint="newsletter", channel=EMAIL
        )
        request.context.event_time.FromSeconds(as_of)
        replies[profile_id] = await stack.stub.Decide(request)

    frequent = {c.action_id: c.score for c in replies["p-frequent"].candidates}
    lapsed = {c.action_id: c.score for c in replies["p-lapsed"].candidates}
    assert (
        replies["p-frequent"].repeat_probability
        > replies["p-lapsed"].repeat_probability
    )
    assert frequent["email-discount-10pct"] < lapsed["email-discount-10pct"]


async def test_decide_consent_stopped(
    redis_client: aioredis.Redis,
    redis_url: str,
    model_root: Path,
    identity_backend: GrpcService,
) -> None:
    consent = create_consent(
        ConsentSettings(
            port=0,
            redis_url=redis_url,
            grace_seconds=0,
            durability="warn",
            identity_events=False,
        )
    )
    await consent.start()
    settings = decision_settings(
        redis_url,
        model_root,
        identity_target=f"127.0.0.1:{identity_backend.port}",
        consent_target=f"127.0.0.1:{consent.port}",
    )
    async with running_decision(settings) as (_, stub):
        before = await stub.Decide(_in_app())
        await consent.stop(grace=0)

        after = await stub.Decide(_in_app())

    assert before.silence_reason == PB.SILENCE_REASON_NO_CONSENT
    assert after.silent is True
    assert after.silence_reason == PB.SILENCE_REASON_CONSENT_UNAVAILABLE
    assert _statuses(after) == {CAROUSEL: "CANDIDATE_STATUS_CONSENT_UNAVAILABLE"}
    assert after.consent_token == ""


async def test_decide_consent_too_slow(
    stack: DecisionStack,
    redis_url: str,
    model_root: Path,
    identity_backend: GrpcService,
) -> None:
    await _record_consent(stack, "p-ann", [(PERSONALISATION, IN_APP)])
    stack.proxy.delay_seconds = 1.0
    settings = decision_settings(
        redis_url,
        model_root,
        identity_target=f"127.0.0.1:{identity_backend.port}",
        consent_target=stack.proxy.target,
        consent_deadline_ms=100,
    )

    async with running_decision(settings) as (_, stub):
        reply = await stub.Decide(_in_app())

    assert reply.silent is True
    assert reply.silence_reason == PB.SILENCE_REASON_CONSENT_UNAVAILABLE
    assert stack.consent_checks >= 1


async def test_every_decide_checks_consent_once(stack: DecisionStack) -> None:
    await _record_consent(stack, "p-ann", [(PERSONALISATION, IN_APP)])
    await FeatureStore(stack.redis, 60).put_many(
        {"p-bob": PurchaseAggregate(4, 16_000, 6, 1_700_000_000, 1_760_000_000, 5000)}
    )
    requests = [
        _in_app("p-ann"),
        _in_app("p-bob"),
        PB.DecideRequest(profile_id="p-ann", touchpoint="newsletter", channel=EMAIL),
        PB.DecideRequest(
            profile_id="p-ann", touchpoint="checkout", channel=consent_pb2.CHANNEL_WEB
        ),
        PB.DecideRequest(
            profile_id="p-ann", touchpoint="till", channel=consent_pb2.CHANNEL_IN_STORE
        ),
        PB.DecideRequest(profile_id="p-ann", touchpoint="nowhere", channel=EMAIL),
        PB.DecideRequest(
            profile_id="p-cat", touchpoint="winback", channel=consent_pb2.CHANNEL_SMS
        ),
    ] * 3

    replies = [await stack.stub.Decide(request) for request in requests]

    assert stack.consent_checks == len(requests)
    assert all(reply.consent_token for reply in replies)


async def test_decide_without_candidates(stack: DecisionStack) -> None:
    reply = await stack.stub.Decide(
        PB.DecideRequest(
            profile_id="p-ann", touchpoint="till", channel=consent_pb2.CHANNEL_IN_STORE
        )
    )

    assert reply.silence_reason == PB.SILENCE_REASON_NO_ELIGIBLE_ACTION
    assert list(reply.candidates) == []
    assert stack.consent_checks == 1


async def test_decide_by_identifiers(stack: DecisionStack) -> None:
    profile_id = await _resolve(stack, "ann@example.com")
    await _record_consent(stack, profile_id, [(PERSONALISATION, IN_APP)])

    reply = await stack.stub.Decide(
        PB.DecideRequest(
            identifiers=[
                identity_pb2.Identifier(
                    kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value=" Ann@Example.com "
                )
            ],
            touchpoint="home",
            channel=IN_APP,
        )
    )

    assert reply.profile_id == profile_id
    assert reply.action_id == CAROUSEL


async def test_decide_unknown_identifiers(stack: DecisionStack) -> None:
    reply = await stack.stub.Decide(
        PB.DecideRequest(
            identifiers=[
                identity_pb2.Identifier(
                    kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value="nobody@example.com"
                )
            ],
            touchpoint="home",
            channel=IN_APP,
        )
    )

    assert reply.silent is True
    assert reply.silence_reason == PB.SILENCE_REASON_PROFILE_NOT_FOUND
    assert reply.profile_id == ""
    assert stack.consent_checks == 0


async def test_decide_identity_down(
    redis_client: aioredis.Redis,
    redis_url: str,
    model_root: Path,
    consent_backend: GrpcService,
) -> None:
    settings = decision_settings(
        redis_url,
        model_root,
        identity_target=f"127.0.0.1:{free_port()}",
        consent_target=f"127.0.0.1:{consent_backend.port}",
    )
    request = PB.DecideRequest(
        identifiers=[
            identity_pb2.Identifier(
                kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value="a@b.example"
            )
        ],
        touchpoint="home",
        channel=IN_APP,
    )

    async with running_decision(settings) as (_, stub):
        reply = await stub.Decide(request)

    assert reply.silence_reason == PB.SILENCE_REASON_IDENTITY_UNAVAILABLE


async def test_decide_features_unavailable(
    redis_client: aioredis.Redis,
    redis_url: str,
    model_root: Path,
    identity_backend: GrpcService,
    consent_backend: GrpcService,
) -> None:
    # The decision service gets a Redis address where nothing listens; consent works.
    proxy = ForwardingProxy(f"127.0.0.1:{consent_backend.port}")
    await proxy.start()
    settings = decision_settings(
        f"redis://127.0.0.1:{free_port()}/0",
        model_root,
        identity_target=f"127.0.0.1:{identity_backend.port}",
        consent_target=f"127.0.0.1:{consent_backend.port}",
        redis_timeout_seconds=0.2,
    )
    try:
        async with running_decision(settings) as (_, stub):
            reply = await stub.Decide(_in_app())
    finally:
        await proxy.stop()

    assert reply.silent is True
    assert reply.silence_reason == PB.SILENCE_REASON_FEATURES_UNAVAILABLE
    assert reply.consent_token != ""


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"touchpoint": "home", "channel": IN_APP}, "profile_id"),
        ({"profile_id": "p-ann", "touchpoint": "", "channel": IN_APP}, "touchpoint"),
        (
            {"profile_id": "p-ann", "touchpoint": "x" * 65, "channel": IN_APP},
            "touchpoint",
        ),
        ({"profile_id": "p-ann", "touchpoint": "home"}, "channel"),
        ({"profile_id": "p-ann", "touchpoint": "home", "channel": 99}, "channel"),
        (
            {"profile_id": "bad{id}", "touchpoint": "home", "channel": IN_APP},
            "profile_id",
        ),
        (
            {
                "profile_id": "p-ann",
                "identifiers": [{"kind": 1, "value": "a@b.example"}],
                "touchpoint": "home",
                "channel": IN_APP,
            },
            "identifiers",
        ),
        (
            {
                "identifiers": [
                    {"kind": 1, "value": "a@b.example"},
                    {"kind": 0, "value": "x"},
                ],
                "touchpoint": "home",
                "channel": IN_APP,
            },
            "identifiers[1].kind",
        ),
        (
            {
                "identifiers": [{"kind": 1, "value": ""}],
                "touchpoint": "home",
                "channel": IN_APP,
            },
            "identifiers[0].value",
        ),
        (
            {
                "profile_id": "p-ann",
                "touchpoint": "checkout",
                "channel": IN_APP,
                "context": {
                    "basket": [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 0}]
                },
            },
            "context.basket[1].quantity",
        ),
        (
            {
                "profile_id": "p-ann",
                "touchpoint": "checkout",
                "channel": IN_APP,
                "context": {"basket": [{"sku": "", "quantity": 1}]},
            },
            "context.basket[0].sku",
        ),
        (
            {
                "profile_id": "p-ann",
                "touchpoint": "checkout",
                "channel": IN_APP,
                "context": {
                    "basket": [{"sku": "a", "quantity": 1, "unit_price_cents": -1}]
                },
            },
            "context.basket[0].unit_price_cents",
        ),
    ],
)
async def test_decide_invalid_argument(
    stack: DecisionStack,
    request_fields: dict,
    field: str,  # type: ignore[type-arg]
) -> None:
    request = json_format.ParseDict(request_fields, PB.DecideRequest())

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.Decide(request)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _field_violations(caught.value) == [field]
    assert stack.consent_checks == 0


async def test_decision_record_stored(stack: DecisionStack) -> None:
    await _record_consent(stack, "p-ann", [(PERSONALISATION, IN_APP)])

    reply = await stack.stub.Decide(_in_app())

    record = await DecisionLog(stack.redis, 60).load("p-ann", reply.decision_id)
    ttl = await stack.redis.ttl(decision_key("p-ann", reply.decision_id))
    assert record is not None
    assert record["chosen"] == CAROUSEL
    assert record["model_version"] == reply.model_version
    assert record["consent_token"] == reply.consent_token
    assert record["features"]["frequency"] == 0.0
    assert record["candidates"][0]["status"] == "CANDIDATE_STATUS_CHOSEN"
    assert 0 < ttl <= 120 * 86_400


async def test_record_outcome_updates_features(stack: DecisionStack) -> None:
    request = PB.RecordOutcomeRequest(
        profile_id="p-ann",
        kind=PB.OUTCOME_KIND_PURCHASE,
        amount_cents=4599,
        quantity=3,
        event_id="order-1",
    )
    request.event_time.FromSeconds(1_760_000_000)

    reply = await stack.stub.RecordOutcome(request)

    assert reply.profile_id == "p-ann"
    assert reply.duplicate is False
    assert await FeatureStore(stack.redis, 60).get("p-ann") == PurchaseAggregate(
        purchase_count=1,
        total_amount_cents=4599,
        total_quantity=3,
        first_purchase_time=1_760_000_000,
        last_purchase_time=1_760_000_000,
        last_amount_cents=4599,
    )


async def test_record_outcome_duplicate(stack: DecisionStack) -> None:
    request = PB.RecordOutcomeRequest(
        profile_id="p-ann",
        kind=PB.OUTCOME_KIND_PURCHASE,
        amount_cents=1000,
        quantity=1,
        event_id="order-7",
    )
    await stack.stub.RecordOutcome(request)
    before = await FeatureStore(stack.redis, 60).get("p-ann")
    request.amount_cents = 99_999

    reply = await stack.stub.RecordOutcome(request)

    assert reply.duplicate is True
    assert await FeatureStore(stack.redis, 60).get("p-ann") == before


async def test_record_outcome_by_identifiers(stack: DecisionStack) -> None:
    profile_id = await _resolve(stack, "bea@example.com")
    email = identity_pb2.Identifier(
        kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value="bea@example.com"
    )

    reply = await stack.stub.RecordOutcome(
        PB.RecordOutcomeRequest(
            identifiers=[email],
            kind=PB.OUTCOME_KIND_PURCHASE,
            amount_cents=0,
            quantity=1,
            event_id="e1",
        )
    )

    stored = await FeatureStore(stack.redis, 60).get(profile_id)
    assert reply.profile_id == profile_id
    assert stored is not None
    assert stored.purchase_count == 1


async def test_record_outcome_unknown_identifiers(stack: DecisionStack) -> None:
    email = identity_pb2.Identifier(
        kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value="ghost@example.com"
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.RecordOutcome(
            PB.RecordOutcomeRequest(
                identifiers=[email],
                kind=PB.OUTCOME_KIND_PURCHASE,
                quantity=1,
                event_id="e1",
            )
        )

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_cents": -1}, "amount_cents"),
        ({"quantity": 0}, "quantity"),
        ({"event_id": ""}, "event_id"),
        ({"event_id": "e" * 129}, "event_id"),
        ({"kind": PB.OUTCOME_KIND_UNSPECIFIED}, "kind"),
        ({"profile_id": ""}, "profile_id"),
    ],
)
async def test_record_outcome_invalid_argument(
    stack: DecisionStack,
    change: dict,
    field: str,  # type: ignore[type-arg]
) -> None:
    fields = {
        "profile_id": "p-ann",
        "kind": PB.OUTCOME_KIND_PURCHASE,
        "amount_cents": 100,
        "quantity": 1,
        "event_id": "e1",
        **change,
    }

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.RecordOutcome(PB.RecordOutcomeRequest(**fields))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _field_violations(caught.value) == [field]


async def test_list_actions(stack: DecisionStack) -> None:
    reply = await stack.stub.ListActions(PB.ListActionsRequest())

    actions = {action.action_id: action for action in reply.actions}
    assert len(actions) == 7
    assert len(reply.catalog_version) == 16
    assert actions[CAROUSEL].kind == PB.ACTION_KIND_RECOMMENDATION
    assert actions[CAROUSEL].channel == IN_APP
    assert list(actions[CAROUSEL].purposes) == [PERSONALISATION]
    assert list(actions["web-free-shipping-banner"].touchpoints) == ["checkout"]


def test_service_needs_model(redis_url: str, tmp_path: Path) -> None:
    settings = decision_settings(redis_url, tmp_path / "no-model")

    with pytest.raises(ArtifactNotFoundError, match="no model artifact"):
        create_service(settings)
