"""SplitProfile over real gRPC: detach named identifiers, undo a merge, events, errors."""

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
    PHONE,
    ident,
    lookup,
    resolve,
)
from tests.identity.test_service import bad_request_fields
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"


async def split(stub: Stub, **fields: object) -> identity_pb2.SplitProfileResponse:
    return await stub.SplitProfile(identity_pb2.SplitProfileRequest(**fields))  # type: ignore[arg-type]


async def get_profile(stub: Stub, profile_id: str) -> identity_pb2.Profile:
    response = await stub.GetProfile(
        identity_pb2.GetProfileRequest(profile_id=profile_id)
    )
    return response.profile


async def merged_pair(stub: Stub) -> tuple[str, str]:
    """Make Ana's and Bo's profiles and merge them. Return the (survivor, merged) ids."""
    ana = await resolve(
        stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d-ana")
    )
    await asyncio.sleep(0.002)  # a later creation time makes Ana's profile the survivor
    bo = await resolve(
        stub, ident(PHONE, "020 7946 0958"), ident(COOKIE_ID, "ck-bo"), source="app"
    )
    merged = await resolve(
        stub, ident(EMAIL, "ana@example.com"), ident(COOKIE_ID, "ck-bo"), source="pos"
    )
    loser = ({ana.profile_id, bo.profile_id} - {merged.profile_id}).pop()
    return merged.profile_id, loser


async def test_split_named_identifiers(stub: Stub) -> None:
    created = await resolve(
        stub,
        ident(EMAIL, "ana@example.com"),
        ident(DEVICE_ID, "d-shared"),
        ident(COOKIE_ID, "ck-1"),
    )

    response = await split(
        stub,
        profile_id=created.profile_id,
        identifiers=[ident(DEVICE_ID, "d-shared"), ident(COOKIE_ID, " ck-1 ")],
    )
    device = await lookup(stub, ident(DEVICE_ID, "d-shared"))
    email = await lookup(stub, ident(EMAIL, "ana@example.com"))
    remaining = await get_profile(stub, created.profile_id)
    new = await get_profile(stub, response.new_profile_id)

    assert response.profile_id == created.profile_id
    assert response.new_profile_id not in ("", created.profile_id)
    assert sorted(item.kind for item in response.moved_identifiers) == [
        DEVICE_ID,
        COOKIE_ID,
    ]
    assert {item.origin_profile_id for item in response.moved_identifiers} == {
        response.new_profile_id
    }
    assert {item.source for item in response.moved_identifiers} == {"web"}
    assert device.profile_id == response.new_profile_id
    assert email.profile_id == created.profile_id
    assert [item.kind for item in remaining.identifiers] == [EMAIL]
    assert len(new.identifiers) == 2


async def test_split_by_hash(stub: Stub) -> None:
    created = await resolve(
        stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d-1")
    )
    profile = await get_profile(stub, created.profile_id)
    device = next(item for item in profile.identifiers if item.kind == DEVICE_ID)

    response = await split(
        stub,
        profile_id=created.profile_id,
        identifier_hashes=[
            identity_pb2.IdentifierHash(kind=DEVICE_ID, value_hash=device.value_hash)
        ],
    )

    assert [item.value_hash for item in response.moved_identifiers] == [
        device.value_hash
    ]


async def test_split_undoes_merge(stub: Stub) -> None:
    survivor, loser = await merged_pair(stub)
    ana_side = {
        "email": ident(EMAIL, "ana@example.com"),
        "device": ident(DEVICE_ID, "d-ana"),
    }
    bo_side = {
        "phone": ident(PHONE, "020 7946 0958"),
        "cookie": ident(COOKIE_ID, "ck-bo"),
    }
    ana_profile = await lookup(stub, ana_side["email"])
    before = await get_profile(stub, survivor)

    response = await split(stub, profile_id=survivor, merged_profile_id=loser)
    survivor_profile = await get_profile(stub, survivor)
    loser_profile = await get_profile(stub, loser)

    assert ana_profile.profile_id == survivor
    assert len(before.identifiers) == 4
    assert response.profile_id == survivor
    assert list(response.moved_merged_profile_ids) == [loser]
    assert len(response.moved_identifiers) == 2
    for identifier in bo_side.values():
        assert (await lookup(stub, identifier)).profile_id == response.new_profile_id
    for identifier in ana_side.values():
        assert (await lookup(stub, identifier)).profile_id == survivor
    assert len(survivor_profile.identifiers) == 2
    assert list(survivor_profile.merged_profile_ids) == []
    assert loser_profile.profile_id == response.new_profile_id
    assert list(loser_profile.merged_profile_ids) == [loser]


async def test_split_publishes_event(stub: Stub, redis_client: aioredis.Redis) -> None:
    created = await resolve(
        stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d")
    )

    response = await split(
        stub, profile_id=created.profile_id, identifiers=[ident(DEVICE_ID, "d")]
    )
    entries = await redis_client.xrange(EVENTS_STREAM)

    assert len(entries) == 1
    fields = entries[0][1]
    assert sorted(fields) == ["new_profile_id", "profile_id", "time", "type"]
    assert fields["type"] == "split"
    assert fields["profile_id"] == created.profile_id
    assert fields["new_profile_id"] == response.new_profile_id
    assert fields["time"].endswith("Z")


async def test_split_every_identifier_rejected(stub: Stub) -> None:
    created = await resolve(
        stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d")
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await split(
            stub,
            profile_id=created.profile_id,
            identifiers=[ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d")],
        )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "at least one must stay" in (caught.value.details() or "")


async def test_split_not_linked(stub: Stub) -> None:
    created = await resolve(
        stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d")
    )
    other = await resolve(stub, ident(ACCOUNT_ID, "acct-9"))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await split(
            stub,
            profile_id=created.profile_id,
            identifiers=[ident(DEVICE_ID, "d"), ident(ACCOUNT_ID, "acct-9")],
        )
    still = await lookup(stub, ident(DEVICE_ID, "d"))

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "identifiers[1] is not linked" in (caught.value.details() or "")
    assert still.profile_id == created.profile_id
    assert other.profile_id != created.profile_id


async def test_split_unknown_profile(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await split(
            stub, profile_id="p_" + "c" * 32, identifiers=[ident(DEVICE_ID, "d")]
        )

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_split_not_merged(stub: Stub) -> None:
    created = await resolve(
        stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d")
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await split(
            stub, profile_id=created.profile_id, merged_profile_id="p_" + "d" * 32
        )

    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


INVALID_SPLITS = [
    pytest.param(
        {"profile_id": "p_1"}, ["profile_id", "identifiers"], id="bad-id-nothing"
    ),
    pytest.param(
        {
            "profile_id": "p_" + "a" * 32,
            "merged_profile_id": "p_" + "b" * 32,
            "identifiers": [ident(EMAIL, "a@example.com")],
        },
        ["merged_profile_id"],
        id="both-selectors",
    ),
    pytest.param(
        {"profile_id": "p_" + "a" * 32, "merged_profile_id": "x"},
        ["merged_profile_id"],
        id="bad-merged-id",
    ),
    pytest.param(
        {
            "profile_id": "p_" + "a" * 32,
            "identifiers": [ident(EMAIL, "not-an-email")],
            "identifier_hashes": [
                identity_pb2.IdentifierHash(kind=DEVICE_ID, value_hash="XYZ")
            ],
        },
        ["identifiers[0].value", "identifier_hashes[0].value_hash"],
        id="bad-identifiers",
    ),
    pytest.param(
        {
            "profile_id": "p_" + "a" * 32,
            "identifier_hashes": [identity_pb2.IdentifierHash(value_hash="a" * 64)],
        },
        ["identifier_hashes[0].kind"],
        id="hash-without-kind",
    ),
    pytest.param(
        {
            "profile_id": "p_" + "a" * 32,
            "identifiers": [ident(EMAIL, "a@example.com")],
            "request_id": "r" * 65,
        },
        ["request_id"],
        id="long-request-id",
    ),
]


@pytest.mark.parametrize(("fields", "paths"), INVALID_SPLITS)
async def test_split_invalid(
    stub: Stub, fields: dict[str, object], paths: list[str]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await split(stub, **fields)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(bad_request_fields(caught.value)) == sorted(paths)
