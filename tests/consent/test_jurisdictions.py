"""Never-asked pairs resolved by jurisdiction: the table, SetJurisdiction and checks."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
import redis.asyncio as aioredis

from services.consent.app import create_service
from services.consent.jurisdictions import JurisdictionConfigError, JurisdictionPolicy
from services.consent.models import Pair
from services.consent.state import NEVER_ASKED, NO_OBJECTION
from services.consent.tokens import decode_token
from tests.consent.conftest import consent_settings
from tests.consent.helpers import SUBJECT, change, record
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

MARKETING_EMAIL = Pair(pb.PURPOSE_MARKETING, pb.CHANNEL_EMAIL)
MARKETING_SMS = Pair(pb.PURPOSE_MARKETING, pb.CHANNEL_SMS)
ANALYTICS_WEB = Pair(pb.PURPOSE_ANALYTICS, pb.CHANNEL_WEB)
THREE_PAIRS = [
    pb.PurposeChannel(purpose=pair.purpose, channel=pair.channel)
    for pair in (MARKETING_EMAIL, MARKETING_SMS, ANALYTICS_WEB)
]


def write_table(folder: Path, text: str) -> Path:
    path = folder / "jurisdictions.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def set_jurisdiction(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, code: str, **fields: str
) -> pb.SetJurisdictionResponse:
    return await stub.SetJurisdiction(
        pb.SetJurisdictionRequest(
            subject_id=SUBJECT, jurisdiction=code, source="signup", **fields
        )
    )


async def check_three(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> pb.CheckConsentResponse:
    return await stub.CheckConsent(
        pb.CheckConsentRequest(subject_id=SUBJECT, pairs=THREE_PAIRS)
    )


def test_shipped_table_regimes() -> None:
    policy = JurisdictionPolicy.load(None, "EU")
    _, eu = policy.verdicts("EU")
    _, us = policy.verdicts("US")

    assert policy.codes == {"EU", "GB", "US"}
    assert set(eu.values()) == {NEVER_ASKED}
    assert us[MARKETING_EMAIL] == NO_OBJECTION
    assert us[MARKETING_SMS] == NEVER_ASKED
    assert us[Pair(pb.PURPOSE_ANALYTICS, pb.CHANNEL_SMS)] == NEVER_ASKED


def test_policy_default_for_none() -> None:
    policy = JurisdictionPolicy.load(None, "US")

    code, verdicts = policy.verdicts(None)

    assert code == "US"
    assert verdicts[ANALYTICS_WEB] == NO_OBJECTION


def test_policy_unconfigured_code_refuses() -> None:
    policy = JurisdictionPolicy.load(None, "US")

    code, verdicts = policy.verdicts("ZZ")

    assert code == "ZZ"
    assert set(verdicts.values()) == {NEVER_ASKED}


def test_policy_patterns(tmp_path: Path) -> None:
    path = write_table(
        tmp_path,
        """
        [jurisdictions.XA]
        regime = "opt-in"
        opt_out_pairs = ["analytics:*", "*:in_store"]
        """,
    )

    _, verdicts = JurisdictionPolicy.load(path, "XA").verdicts("XA")

    allowed = {pair for pair, verdict in verdicts.items() if verdict.allowed}
    assert ANALYTICS_WEB in allowed
    assert Pair(pb.PURPOSE_MARKETING, pb.CHANNEL_IN_STORE) in allowed
    assert MARKETING_EMAIL not in allowed
    assert len(allowed) == 6 + 3


def test_policy_more_restrictive() -> None:
    policy = JurisdictionPolicy.load(None, "EU")

    assert policy.more_restrictive("US", "EU") == "EU"
    assert policy.more_restrictive("EU", "US") == "EU"
    assert policy.more_restrictive("EU", "GB") == "EU"
    assert policy.more_restrictive(None, "US") == "US"
    assert policy.more_restrictive("US", None) == "US"
    assert policy.more_restrictive("US", "ZZ") == "ZZ"


BAD_TABLES = {
    "no table": "",
    "unknown regime": '[jurisdictions.XA]\nregime = "maybe"',
    "wrong exception key": '[jurisdictions.XA]\nregime = "opt-in"\nopt_in_pairs = []',
    "unknown purpose": '[jurisdictions.XA]\nregime = "opt-out"\nopt_in_pairs = ["ads:*"]',
    "not a pattern": '[jurisdictions.XA]\nregime = "opt-out"\nopt_in_pairs = ["sms"]',
    "not toml": "[jurisdictions.XA",
}


@pytest.mark.parametrize("text", BAD_TABLES.values(), ids=BAD_TABLES.keys())
def test_policy_rejects_bad_table(tmp_path: Path, text: str) -> None:
    path = write_table(tmp_path, text)

    with pytest.raises(JurisdictionConfigError):
        JurisdictionPolicy.load(path, "XA")


def test_policy_rejects_unknown_default() -> None:
    with pytest.raises(JurisdictionConfigError, match="'FR' is not configured"):
        JurisdictionPolicy.load(None, "FR")


async def test_check_default_refuses(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    response = await check_three(stub)

    assert response.jurisdiction == "EU"
    assert [r.allowed for r in response.results] == [False, False, False]
    assert {r.reason for r in response.results} == {pb.CHECK_REASON_NEVER_ASKED}


async def test_check_opt_out_allows_until_objection(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await set_jurisdiction(stub, "US")
    before = await check_three(stub)
    await record(stub, change(pb.CONSENT_ACTION_DENY))
    after = await check_three(stub)

    assert before.jurisdiction == "US"
    assert [r.allowed for r in before.results] == [True, False, True]
    assert [r.reason for r in before.results] == [
        pb.CHECK_REASON_NO_OBJECTION,
        pb.CHECK_REASON_NEVER_ASKED,
        pb.CHECK_REASON_NO_OBJECTION,
    ]
    assert before.results[0].status == pb.CONSENT_STATUS_NEVER_ASKED
    assert after.results[0].allowed is False
    assert after.results[0].reason == pb.CHECK_REASON_DENIED


async def test_jurisdiction_in_ledger_and_list(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    written = await set_jurisdiction(stub, "GB", idempotency_key="signup-1")
    replayed = await set_jurisdiction(stub, "GB", idempotency_key="signup-1")
    listing = await stub.ListConsents(pb.ListConsentsRequest(subject_id=SUBJECT))
    history = await stub.ListConsentHistory(
        pb.ListConsentHistoryRequest(subject_id=SUBJECT)
    )

    assert decode_token(SUBJECT, written.consistency_token) == 1
    assert replayed.replayed is True
    assert replayed.entry_hash == written.entry_hash
    assert listing.jurisdiction == "GB"
    assert [e.type for e in history.entries] == [pb.LEDGER_ENTRY_TYPE_JURISDICTION]
    assert history.entries[0].jurisdiction == "GB"
    assert history.entries[0].source == "signup"
    assert (
        await redis_client.hget(f"tf:consent:{{{SUBJECT}}}:state", "jurisdiction")
        == "GB"
    )


async def test_jurisdiction_key_reuse_rejected(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub,
) -> None:
    await set_jurisdiction(stub, "GB", idempotency_key="signup-1")

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await set_jurisdiction(stub, "US", idempotency_key="signup-1")

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_check_service_default_setting(
    redis_client: aioredis.Redis, redis_url: str
) -> None:
    service = create_service(consent_settings(redis_url, default_jurisdiction="US"))
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            response = await check_three(consent_pb2_grpc.ConsentServiceStub(channel))
    finally:
        await service.stop(grace=0)

    assert response.jurisdiction == "US"
    assert [r.allowed for r in response.results] == [True, False, True]


async def test_check_unconfigured_stored_code_refuses(
    stub: consent_pb2_grpc.ConsentServiceAsyncStub, redis_client: aioredis.Redis
) -> None:
    # A jurisdiction removed from the file after it was recorded fails closed.
    await set_jurisdiction(stub, "US")
    await redis_client.hset(f"tf:consent:{{{SUBJECT}}}:state", "jurisdiction", "ZZ")

    response = await check_three(stub)

    assert response.jurisdiction == "ZZ"
    assert [r.allowed for r in response.results] == [False, False, False]
