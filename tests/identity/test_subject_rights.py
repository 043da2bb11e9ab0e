"""ExportProfile, EraseProfile and ExplainLink over real gRPC, with the erase guarantee."""

from __future__ import annotations

import asyncio
from typing import TypeAlias

import grpc
import pytest
import redis.asyncio as aioredis

from services.identity.keys import EVENTS_STREAM
from tests.identity.conftest import (
    ACCOUNT_ID,
    COOKIE_ID,
    DEVICE_ID,
    EMAIL,
    LOYALTY_ID,
    PHONE,
    ident,
    lookup,
    rejections,
    resolve,
)
from tests.identity.test_service import bad_request_fields
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"

ANA = [ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d-ana")]
BO = [ident(PHONE, "020 7946 0958"), ident(COOKIE_ID, "ck-bo")]
BRIDGE = [ident(EMAIL, "ana@example.com"), ident(COOKIE_ID, "ck-bo")]


async def merge_ana_and_bo(stub: Stub) -> tuple[str, str]:
    """Create Ana's profile, then Bo's, then merge them. Return the (survivor, merged) ids."""
    ana = await resolve(stub, *ANA)
    await asyncio.sleep(0.002)  # a later creation time makes Ana's profile the survivor
    bo = await resolve(stub, *BO, source="app")
    merged = await resolve(stub, *BRIDGE, source="pos")
    assert merged.profile_id == ana.profile_id
    return ana.profile_id, bo.profile_id


async def erase(stub: Stub, profile_id: str) -> identity_pb2.EraseProfileResponse:
    return await stub.EraseProfile(
        identity_pb2.EraseProfileRequest(profile_id=profile_id)
    )


async def profile_status(stub: Stub, profile_id: str) -> grpc.StatusCode:
    """Return the status code of GetProfile for profile_id."""
    try:
        await stub.GetProfile(identity_pb2.GetProfileRequest(profile_id=profile_id))
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_erase_merged_leaves_nothing(stub: Stub) -> None:
    ana, bo = await merge_ana_and_bo(stub)

    response = await erase(stub, bo)

    assert response.profile_id == ana
    assert list(response.merged_profile_ids) == [bo]
    assert response.erased_identifier_count == 4
    for identifier in [*ANA, *BO]:
        found = await lookup(stub, identifier)
        assert found.found is False, identifier
    assert await profile_status(stub, ana) == grpc.StatusCode.NOT_FOUND
    assert await profile_status(stub, bo) == grpc.StatusCode.NOT_FOUND


async def test_erase_replay_stays_erased(stub: Stub) -> None:
    ana, bo = await merge_ana_and_bo(stub)
    await erase(stub, ana)

    replays = [
        await resolve(stub, *ANA),
        await resolve(stub, *BO, source="app"),
        await resolve(stub, *BRIDGE, source="pos"),
    ]

    for replay in replays:
        assert replay.profile_id == ""
        assert replay.created is False
        assert rejections(replay) == [
            (0, "REJECTION_REASON_ERASED", "IDENTIFIER_KIND_UNSPECIFIED", False),
            (1, "REJECTION_REASON_ERASED", "IDENTIFIER_KIND_UNSPECIFIED", False),
        ]
    for identifier in [*ANA, *BO]:
        assert (await lookup(stub, identifier)).found is False
    assert await profile_status(stub, ana) == grpc.StatusCode.NOT_FOUND
    assert await profile_status(stub, bo) == grpc.StatusCode.NOT_FOUND


async def test_erase_replay_with_new_identifier(stub: Stub) -> None:
    created = await resolve(stub, *ANA)
    await erase(stub, created.profile_id)

    replay = await resolve(stub, *ANA, ident(LOYALTY_ID, "LOY-1"))
    profile = await stub.GetProfile(
        identity_pb2.GetProfileRequest(profile_id=replay.profile_id)
    )

    assert replay.created is True
    assert replay.profile_id != created.profile_id
    assert [item.index for item in replay.rejected_identifiers] == [0, 1]
    assert [item.kind for item in profile.profile.identifiers] == [LOYALTY_ID]


async def test_erase_event(stub: Stub, redis_client: aioredis.Redis) -> None:
    ana, bo = await merge_ana_and_bo(stub)

    await erase(stub, ana)
    entries = await redis_client.xrange(EVENTS_STREAM)

    assert [fields["type"] for _, fields in entries] == ["merge", "erase"]
    event = entries[1][1]
    assert sorted(event) == ["merged_ids", "profile_id", "time", "type"]
    assert event["profile_id"] == ana
    assert event["merged_ids"] == bo
    assert event["time"].endswith("Z")


async def test_erase_unmerged_event(stub: Stub, redis_client: aioredis.Redis) -> None:
    created = await resolve(stub, *ANA)

    await erase(stub, created.profile_id)
    entries = await redis_client.xrange(EVENTS_STREAM)

    assert entries[0][1]["type"] == "erase"
    assert entries[0][1]["merged_ids"] == ""


async def test_erase_twice_not_found(stub: Stub) -> None:
    created = await resolve(stub, *ANA)
    await erase(stub, created.profile_id)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await erase(stub, created.profile_id)

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_erase_keeps_other_profiles(stub: Stub) -> None:
    ana = await resolve(stub, *ANA)
    bo = await resolve(stub, *BO)

    await erase(stub, ana.profile_id)

    assert (await lookup(stub, BO[0])).profile_id == bo.profile_id


async def test_erase_invalid_id(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await erase(stub, "nobody")

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(caught.value) == ["profile_id"]


async def test_export_everything(stub: Stub) -> None:
    ana, bo = await merge_ana_and_bo(stub)

    response = await stub.ExportProfile(
        identity_pb2.ExportProfileRequest(profile_id=bo)
    )

    links = {item.kind: item for item in response.profile.identifiers}
    merged = response.merged_profiles[0]
    assert response.profile.profile_id == ana
    assert sorted(links) == sorted([EMAIL, DEVICE_ID, PHONE, COOKIE_ID])
    assert links[PHONE].source == "app"
    assert links[PHONE].origin_profile_id == bo
    assert links[DEVICE_ID].anchor.kind == EMAIL
    assert links[EMAIL].HasField("anchor") is False
    assert [item.profile_id for item in response.merged_profiles] == [bo]
    assert merged.into_profile_id == ana
    assert merged.source == "pos"
    assert merged.merged_identifier.kind == COOKIE_ID
    assert merged.into_identifier.kind == EMAIL
    assert merged.merge_time.ToDatetime() >= merged.create_time.ToDatetime()
    assert response.split_from_profile_id == ""
    assert response.HasField("split_time") is False


async def test_export_unknown(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ExportProfile(
            identity_pb2.ExportProfileRequest(profile_id="p_" + "e" * 32)
        )

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def explain(
    stub: Stub, first: identity_pb2.Identifier, second: identity_pb2.Identifier
) -> identity_pb2.ExplainLinkResponse:
    return await stub.ExplainLink(
        identity_pb2.ExplainLinkRequest(first=first, second=second)
    )


async def test_explain_merged(stub: Stub) -> None:
    ana, bo = await merge_ana_and_bo(stub)

    response = await explain(
        stub, ident(DEVICE_ID, "d-ana"), ident(PHONE, "020 7946 0958")
    )

    assert response.linked is True
    assert response.profile_id == ana
    assert response.first.state == identity_pb2.IDENTIFIER_STATE_LINKED
    assert response.first.link.origin_profile_id == ana
    assert response.second.link.origin_profile_id == bo
    assert response.second.link.source == "app"
    assert len(response.merges) == 1
    assert response.merges[0].merged_profile_id == bo
    assert response.merges[0].into_profile_id == ana
    assert response.merges[0].source == "pos"
    assert response.merges[0].merged_identifier.kind == COOKIE_ID
    assert response.merges[0].into_identifier.kind == EMAIL


async def test_explain_states(stub: Stub) -> None:
    created = await resolve(stub, *ANA)
    await erase(stub, created.profile_id)
    for number in range(6):
        await resolve(
            stub, ident(ACCOUNT_ID, f"acct-{number}"), ident(DEVICE_ID, "kiosk")
        )

    erased = await explain(stub, ANA[0], ident(DEVICE_ID, "kiosk"))
    blocked = await explain(
        stub, ident(COOKIE_ID, "null"), ident(EMAIL, "x@example.com")
    )

    assert erased.linked is False
    assert erased.first.state == identity_pb2.IDENTIFIER_STATE_ERASED
    assert erased.second.state == identity_pb2.IDENTIFIER_STATE_QUARANTINED
    assert blocked.first.state == identity_pb2.IDENTIFIER_STATE_BLOCKED
    assert blocked.second.state == identity_pb2.IDENTIFIER_STATE_UNKNOWN
    assert blocked.linked is False


async def test_explain_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ExplainLink(
            identity_pb2.ExplainLinkRequest(first=ident(EMAIL, "not-an-email"))
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(caught.value) == ["first.value", "second.kind"]
