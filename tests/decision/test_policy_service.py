"""Contact caps, holdout, exploration, outcome attribution and ExplainDecision over gRPC,
with the real consent service and a real Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from services.decision.decider import holdout_position
from services.decision.decision_log import DecisionLog
from services.decision.keys import contacts_key
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
DAY = 86_400
T0 = 899_251_200
DISCOUNT = "email-discount-10pct"
NEW_ARRIVALS = "email-new-arrivals"


def _newsletter(profile_id: str, as_of: int = T0) -> decision_pb2.DecideRequest:
    request = PB.DecideRequest(
        profile_id=profile_id, touchpoint="newsletter", channel=EMAIL
    )
    request.context.event_time.FromSeconds(as_of)
    return request


def _purchase(
    profile_id: str, event_id: str, time: int, amount: int = 4000, discount: int = 0
) -> decision_pb2.RecordOutcomeRequest:
    request = PB.RecordOutcomeRequest(
        profile_id=profile_id,
        kind=PB.OUTCOME_KIND_PURCHASE,
        amount_cents=amount,
        discount_cents=discount,
        quantity=1,
        event_id=event_id,
    )
    request.event_time.FromSeconds(time)
    return request


async def _grant_email(stack: DecisionStack, profile_id: str) -> None:
    await _record_consent(
        stack, profile_id, [(MARKETING, EMAIL), (PERSONALISATION, EMAIL)]
    )


@asynccontextmanager
async def _service_with_policy(
    stack: DecisionStack,
    redis_url: str,
    model_root: Path,
    tmp_path: Path,
    holdout: float = 0.0,
    exploration: float = 0.0,
) -> AsyncIterator[decision_pb2_grpc.DecisionServiceAsyncStub]:
    """Run a second decision service whose bundle has the given policy shares."""
    folder = derive_bundle(
        model_root,
        tmp_path / "registry",
        "policy-bundle",
        catalog_with_policy(holdout_share=holdout, exploration_share=exploration),
    )
    settings = decision_settings(redis_url, folder, consent_target=stack.proxy.target)
    async with running_decision(settings) as (_, stub):
        yield stub


async def test_cap_blocks_second_email(stack: DecisionStack) -> None:
    await _grant_email(stack, "p-cap")

    first = await stack.stub.Decide(_newsletter("p-cap"))
    second = await stack.stub.Decide(_newsletter("p-cap", T0 + 3 * DAY))
    third = await stack.stub.Decide(_newsletter("p-cap", T0 + 8 * DAY))

    assert first.action_id != ""
    assert second.silence_reason == PB.SILENCE_REASON_CONTACT_CAP
    assert {c.status for c in second.candidates} == {PB.CANDIDATE_STATUS_CAPPED}
    assert third.action_id != ""


async def test_cap_ignores_silent_decisions(stack: DecisionStack) -> None:
    silent = await stack.stub.Decide(_newsletter("p-silent"))
    await _grant_email(stack, "p-silent")

    chosen = await stack.stub.Decide(_newsletter("p-silent", T0 + DAY))

    assert silent.silence_reason == PB.SILENCE_REASON_NO_CONSENT
    assert chosen.action_id != ""
    assert await stack.redis.zcard(contacts_key("p-silent")) == 1


async def test_cap_holds_under_concurrency(stack: DecisionStack) -> None:
    await _grant_email(stack, "p-race")

    replies = await asyncio.gather(
        *(stack.stub.Decide(_newsletter("p-race")) for _ in range(12))
    )

    chosen = [r for r in replies if r.action_id]
    capped = [r for r in replies if r.silence_reason == PB.SILENCE_REASON_CONTACT_CAP]
    assert len(chosen) == 1
    assert len(capped) == 11
    assert await stack.redis.zcard(contacts_key("p-race")) == 1


async def test_decide_reports_versions(stack: DecisionStack) -> None:
    await _grant_email(stack, "p-ver")
    actions = await stack.stub.ListActions(PB.ListActionsRequest())

    reply = await stack.stub.Decide(_newsletter("p-ver"))

    assert reply.catalog_version == actions.catalog_version
    assert reply.model_version == actions.bundle_version
    assert reply.propensity == 1.0
    assert reply.holdout is False
    assert reply.explored is False


async def test_holdout_gets_silence(
    stack: DecisionStack, redis_url: str, model_root: Path, tmp_path: Path
) -> None:
    # With a share of 0.5 and the salt "tests", ids are in or out by their hash.
    inside = next(
        f"h-{n}" for n in range(100) if holdout_position("tests", f"h-{n}") < 0.5
    )
    outside = next(
        f"h-{n}" for n in range(100) if holdout_position("tests", f"h-{n}") >= 0.5
    )
    for profile_id in (inside, outside):
        await _grant_email(stack, profile_id)

    async with _service_with_policy(
        stack, redis_url, model_root, tmp_path, holdout=0.5
    ) as stub:
        held = [
            await stub.Decide(_newsletter(inside, T0 + n * 8 * DAY)) for n in range(3)
        ]
        treated = await stub.Decide(_newsletter(outside))

    assert {r.silence_reason for r in held} == {PB.SILENCE_REASON_HOLDOUT}
    assert all(r.holdout for r in held)
    assert all(r.propensity == 1.0 for r in held)
    assert all(r.consent_token for r in held)
    assert treated.holdout is False
    assert treated.action_id != ""


def test_holdout_share_of_profiles() -> None:
    inside = sum(holdout_position("salt-a", f"p{n}") < 0.1 for n in range(20_000))

    assert 1_800 < inside < 2_200


def test_holdout_position_stable() -> None:
    assert holdout_position("s", "p-1") == holdout_position("s", "p-1")
    assert holdout_position("s", "p-1") != holdout_position("t", "p-1")


async def test_exploration_logs_propensity(
    stack: DecisionStack, redis_url: str, model_root: Path, tmp_path: Path
) -> None:
    profiles = [f"x-{n}" for n in range(8)]
    for profile_id in profiles:
        await _grant_email(stack, profile_id)

    async with _service_with_policy(
        stack, redis_url, model_root, tmp_path, exploration=1.0
    ) as stub:
        replies = [await stub.Decide(_newsletter(p)) for p in profiles]

    log = DecisionLog(stack.redis, 60)
    records = [await log.load(r.profile_id, r.decision_id) for r in replies]
    # Two open candidates and silence, drawn uniformly.
    assert all(r.explored for r in replies)
    assert all(r.propensity == pytest.approx(1 / 3) for r in replies)
    assert all(
        rec is not None and rec["propensity"] == pytest.approx(1 / 3, abs=1e-6)
        for rec in records
    )
    assert all(
        rec is not None and rec["open_actions"] == [DISCOUNT, NEW_ARRIVALS]
        for rec in records
    )


async def test_outcome_attributed_within_window(stack: DecisionStack) -> None:
    await _grant_email(stack, "p-attr")
    decision = await stack.stub.Decide(_newsletter("p-attr"))

    before = await stack.stub.RecordOutcome(_purchase("p-attr", "o-0", T0 - DAY))
    inside = await stack.stub.RecordOutcome(_purchase("p-attr", "o-1", T0 + 5 * DAY))
    after = await stack.stub.RecordOutcome(_purchase("p-attr", "o-2", T0 + 91 * DAY))

    assert list(before.attributed_decision_ids) == []
    assert list(inside.attributed_decision_ids) == [decision.decision_id]
    assert list(after.attributed_decision_ids) == []


async def test_outcome_attributed_to_each_decision(stack: DecisionStack) -> None:
    first = await stack.stub.Decide(_newsletter("p-two"))
    second = await stack.stub.Decide(_newsletter("p-two", T0 + 10 * DAY))

    reply = await stack.stub.RecordOutcome(_purchase("p-two", "o-1", T0 + 20 * DAY))

    assert sorted(reply.attributed_decision_ids) == sorted(
        [first.decision_id, second.decision_id]
    )


async def test_explain_decision(stack: DecisionStack) -> None:
    await _grant_email(stack, "p-exp")
    await stack.stub.RecordOutcome(
        _purchase("p-exp", "o-0", T0 - 40 * DAY, amount=3000)
    )
    decision = await stack.stub.Decide(_newsletter("p-exp"))
    await stack.stub.RecordOutcome(
        _purchase("p-exp", "o-1", T0 + 2 * DAY, amount=3600, discount=400)
    )

    reply = await stack.stub.ExplainDecision(
        PB.ExplainDecisionRequest(profile_id="p-exp", decision_id=decision.decision_id)
    )

    features = {f.name: f for f in reply.features}
    cost = 2 if decision.action_id == DISCOUNT else 1
    explained = PB.DecideResponse()
    explained.CopyFrom(reply.decision)
    # The record keeps scores to 4 decimals.
    assert [c.score for c in explained.candidates] == pytest.approx(
        [c.score for c in decision.candidates], abs=1e-4
    )
    for candidate in [*explained.candidates, *decision.candidates]:
        candidate.score = 0.0
    assert explained == decision
    assert reply.decision_time.seconds == T0
    assert reply.touchpoint == "newsletter"
    assert reply.channel == EMAIL
    assert features["frequency"].value == 1.0
    assert features["recency_days"].value == 40.0
    assert features["basket_trend"].missing is True
    assert features["contacts_30_days"].value == 0.0
    assert [o.event_id for o in reply.outcomes] == ["o-1"]
    assert reply.outcomes[0].discount_cents == 400
    # margin 0.3 x (3600 + 400) - 400 = 800, less the action's cost.
    assert reply.outcomes[0].margin_cents == pytest.approx(800.0)
    assert reply.attributed_margin_cents == pytest.approx(800.0 - cost)
    assert reply.attribution_end_time.seconds == T0 + 90 * DAY


async def test_explain_unknown_decision(stack: DecisionStack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.ExplainDecision(
            PB.ExplainDecisionRequest(profile_id="p-none", decision_id="abc")
        )

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"profile_id": "", "decision_id": "abc"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"profile_id": "p", "decision_id": ""}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"profile_id": "p", "decision_id": "a:b"}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_explain_invalid_argument(
    stack: DecisionStack, fields: dict[str, str], code: grpc.StatusCode
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.ExplainDecision(PB.ExplainDecisionRequest(**fields))

    assert caught.value.code() == code


async def test_record_outcome_invalid_discount(stack: DecisionStack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.stub.RecordOutcome(_purchase("p", "e", T0, discount=-1))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_list_actions_rules(stack: DecisionStack) -> None:
    reply = await stack.stub.ListActions(PB.ListActionsRequest())

    actions = {a.action_id: a for a in reply.actions}
    caps = {
        consent_pb2.Channel.Name(c.channel): (c.max_contacts, c.period_days)
        for c in reply.caps
    }
    assert caps == {
        "CHANNEL_EMAIL": (1, 7),
        "CHANNEL_SMS": (2, 30),
        "CHANNEL_PUSH": (3, 7),
    }
    assert reply.holdout_share == 0.0
    assert reply.exploration_share == 0.0
    assert actions["sms-5-off"].eligibility.min_recency_days == 60
    assert actions["web-free-shipping-banner"].eligibility.min_basket_cents == 2000
    assert actions[DISCOUNT].discount_rate == pytest.approx(0.1)
    assert reply.bundle_version != ""


def test_settings_reject_short_record_ttl(redis_url: str, model_root: Path) -> None:
    with pytest.raises(ValueError, match="shorter than the attribution window"):
        decision_settings(
            redis_url,
            model_root,
            attribution_window_days=90,
            decision_record_ttl_seconds=30 * DAY,
        )
