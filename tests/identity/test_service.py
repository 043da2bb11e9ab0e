"""The identity service over real gRPC: Resolve, Lookup, GetProfile, health, reflection."""

from __future__ import annotations

import re
from typing import TypeAlias

import grpc
import pytest
import redis.asyncio as aioredis
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from services.identity.keys import EVENTS_STREAM
from tests.identity.conftest import (
    ACCOUNT_ID,
    COOKIE_ID,
    DEVICE_ID,
    EMAIL,
    LOYALTY_ID,
    PHONE,
    POS_TOKEN,
    ident,
)
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"

UNSPECIFIED = identity_pb2.IDENTIFIER_KIND_UNSPECIFIED
UNKNOWN_KIND = identity_pb2.IdentifierKind.ValueType(99)


async def resolve(
    stub: Stub, *identifiers: identity_pb2.Identifier, source: str = "web"
) -> identity_pb2.ResolveResponse:
    return await stub.Resolve(
        identity_pb2.ResolveRequest(identifiers=identifiers, source=source)
    )


async def lookup(
    stub: Stub, *identifiers: identity_pb2.Identifier
) -> identity_pb2.LookupResponse:
    return await stub.Lookup(identity_pb2.LookupRequest(identifiers=identifiers))


async def get_profile(stub: Stub, profile_id: str) -> identity_pb2.Profile:
    response = await stub.GetProfile(
        identity_pb2.GetProfileRequest(profile_id=profile_id)
    )
    return response.profile


def bad_request_fields(error: grpc.aio.AioRpcError) -> list[str]:
    """Return the field paths of the BadRequest detail of an error."""
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            return [violation.field for violation in bad_request.field_violations]
    return []


async def test_resolve_creates(stub: Stub) -> None:
    response = await resolve(stub, ident(EMAIL, "ana@example.com"))

    assert response.created is True
    assert re.fullmatch(r"p_[0-9a-f]{32}", response.profile_id)


async def test_resolve_normalised_email_same_profile(stub: Stub) -> None:
    first = await resolve(stub, ident(EMAIL, "ana@example.com"))

    second = await resolve(stub, ident(EMAIL, "  ANA@Example.com "))

    assert second.profile_id == first.profile_id
    assert second.created is False


async def test_resolve_all_kinds_link(stub: Stub) -> None:
    identifiers = [
        ident(EMAIL, "ana@example.com"),
        ident(PHONE, "020 7946 0958"),
        ident(ACCOUNT_ID, "acct-1"),
        ident(LOYALTY_ID, "loy-1"),
        ident(DEVICE_ID, "dev-1"),
        ident(COOKIE_ID, "ck-1"),
        ident(POS_TOKEN, "tok-1"),
    ]
    created = await resolve(stub, *identifiers, source="pos")

    profile = await get_profile(stub, created.profile_id)

    assert sorted(item.kind for item in profile.identifiers) == [1, 2, 3, 4, 5, 6, 7]
    assert {item.source for item in profile.identifiers} == {"pos"}


async def test_resolve_links_to_existing(stub: Stub) -> None:
    created = await resolve(stub, ident(EMAIL, "ana@example.com"))

    linked = await resolve(
        stub, ident(PHONE, "+44 20 7946 0958"), ident(EMAIL, "ana@example.com")
    )
    found = await lookup(stub, ident(PHONE, "020 7946 0958"))

    assert linked.profile_id == created.profile_id
    assert linked.created is False
    assert found.profile_id == created.profile_id


async def test_resolve_merges_three(stub: Stub, redis_client: aioredis.Redis) -> None:
    first = await resolve(
        stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "dev-a")
    )
    second = await resolve(
        stub, ident(PHONE, "020 7946 0958"), ident(COOKIE_ID, "ck-b")
    )
    third = await resolve(stub, ident(LOYALTY_ID, "loy-c"), ident(POS_TOKEN, "tok-c"))
    ids = {first.profile_id, second.profile_id, third.profile_id}

    merged = await resolve(
        stub,
        ident(EMAIL, "ana@example.com"),
        ident(PHONE, "020 7946 0958"),
        ident(LOYALTY_ID, "loy-c"),
        source="crm",
    )
    survivor = merged.profile_id

    assert len(ids) == 3
    assert survivor in ids
    assert merged.created is False
    assert sorted(merged.merged_profile_ids) == sorted(ids - {survivor})
    for identifier in [
        ident(EMAIL, "ana@example.com"),
        ident(DEVICE_ID, "dev-a"),
        ident(PHONE, "020 7946 0958"),
        ident(COOKIE_ID, "ck-b"),
        ident(LOYALTY_ID, "loy-c"),
        ident(POS_TOKEN, "tok-c"),
    ]:
        found = await lookup(stub, identifier)
        assert found.profile_id == survivor
    for old_id in ids - {survivor}:
        profile = await get_profile(stub, old_id)
        assert profile.profile_id == survivor
        assert sorted(profile.merged_profile_ids) == sorted(ids - {survivor})
        assert len(profile.identifiers) == 6
    assert await redis_client.xlen(EVENTS_STREAM) == 1


async def test_get_profile_provenance(stub: Stub) -> None:
    created = await resolve(stub, ident(EMAIL, "ana@example.com"), source="web")
    await resolve(
        stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "dev-a"), source="app"
    )

    profile = await get_profile(stub, created.profile_id)

    # Both links may carry the same millisecond, so their order is not checked.
    assert {item.kind: item.source for item in profile.identifiers} == {
        EMAIL: "web",
        DEVICE_ID: "app",
    }
    assert all(
        re.fullmatch(r"[0-9a-f]{64}", item.value_hash) for item in profile.identifiers
    )
    assert (
        profile.identifiers[0].link_time.ToDatetime()
        >= profile.create_time.ToDatetime()
    )


async def test_lookup_first_known(stub: Stub) -> None:
    created = await resolve(stub, ident(ACCOUNT_ID, "acct-1"))

    found = await lookup(
        stub, ident(EMAIL, "nobody@example.com"), ident(ACCOUNT_ID, "acct-1")
    )

    assert found.found is True
    assert found.profile_id == created.profile_id
    assert found.matched_index == 1


async def test_lookup_never_creates(stub: Stub, redis_client: aioredis.Redis) -> None:
    found = await lookup(
        stub, ident(EMAIL, "nobody@example.com"), ident(DEVICE_ID, "dev-x")
    )

    assert found.found is False
    assert found.profile_id == ""
    assert await redis_client.dbsize() == 0


async def test_get_profile_unknown(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get_profile(stub, "p_" + "a" * 32)

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


INVALID_RESOLVE = [
    pytest.param([], "web", ["identifiers"], id="no-identifiers"),
    pytest.param(
        [ident(EMAIL, f"a{i}@example.com") for i in range(33)],
        "web",
        ["identifiers"],
        id="33-identifiers",
    ),
    pytest.param(
        [ident(EMAIL, "a@example.com"), ident(UNSPECIFIED, "x")],
        "web",
        ["identifiers[1].kind"],
        id="unspecified-kind",
    ),
    pytest.param(
        [ident(UNKNOWN_KIND, "x")], "web", ["identifiers[0].kind"], id="unknown-kind"
    ),
    pytest.param(
        [ident(EMAIL, "not-an-email")], "web", ["identifiers[0].value"], id="bad-email"
    ),
    pytest.param(
        [ident(ACCOUNT_ID, "a"), ident(ACCOUNT_ID, "b"), ident(PHONE, "12345")],
        "web",
        ["identifiers[2].value"],
        id="bad-phone",
    ),
    pytest.param(
        [ident(DEVICE_ID, "dev\x00a")],
        "web",
        ["identifiers[0].value"],
        id="control-character-device",
    ),
    pytest.param([ident(EMAIL, "a@example.com")], "", ["source"], id="no-source"),
    pytest.param(
        [ident(EMAIL, "a@example.com")], "s" * 65, ["source"], id="long-source"
    ),
    pytest.param(
        [ident(EMAIL, "bad"), ident(UNSPECIFIED, "x")],
        "",
        ["identifiers[0].value", "identifiers[1].kind", "source"],
        id="three-fields",
    ),
]


@pytest.mark.parametrize(("identifiers", "source", "fields"), INVALID_RESOLVE)
async def test_resolve_invalid(
    stub: Stub,
    identifiers: list[identity_pb2.Identifier],
    source: str,
    fields: list[str],
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await resolve(stub, *identifiers, source=source)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(caught.value) == fields


async def test_resolve_blank_value_blocked(stub: Stub) -> None:
    response = await resolve(
        stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, " ")
    )

    assert response.created is True
    assert [item.index for item in response.rejected_identifiers] == [1]
    assert response.rejected_identifiers[0].reason == (
        identity_pb2.REJECTION_REASON_BLOCKED_VALUE
    )


async def test_resolve_invalid_request_id(stub: Stub) -> None:
    request = identity_pb2.ResolveRequest(
        identifiers=[ident(EMAIL, "a@example.com")], source="web", request_id="r" * 65
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Resolve(request)

    assert bad_request_fields(caught.value) == ["request_id"]


async def test_unknown_kind_message_names_value(stub: Stub) -> None:
    request = identity_pb2.ResolveRequest(
        identifiers=[ident(UNKNOWN_KIND, "x")], source="web"
    )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Resolve(request)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown value 99" in (caught.value.details() or "")


async def test_invalid_message_omits_value(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await resolve(stub, ident(EMAIL, "private-person.example.com"))

    assert "private-person" not in (caught.value.details() or "")


async def test_lookup_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await lookup(stub, ident(EMAIL, "a@example.com"), ident(PHONE, "phone"))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(caught.value) == ["identifiers[1].value"]


async def test_lookup_empty_invalid(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await lookup(stub)

    assert bad_request_fields(caught.value) == ["identifiers"]


@pytest.mark.parametrize(
    "profile_id", ["", "p_123", "P_" + "a" * 32, "p_" + "A" * 32, "p_" + "a" * 33]
)
async def test_get_profile_invalid_id(stub: Stub, profile_id: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get_profile(stub, profile_id)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request_fields(caught.value) == ["profile_id"]


async def test_error_info_domain(stub: Stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await get_profile(stub, "p_" + "b" * 32)

    status = rpc_status.from_call(caught.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "identity.trustfirst.dev"
    assert info.reason == "NOT_FOUND"


@pytest.mark.parametrize("service", ["", "trustfirst.identity.v1.IdentityService"])
async def test_health_serving(identity_channel: grpc.aio.Channel, service: str) -> None:
    health = health_pb2_grpc.HealthStub(identity_channel)

    response = await health.Check(health_pb2.HealthCheckRequest(service=service))

    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_service(identity_channel: grpc.aio.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(identity_channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    call = reflection.ServerReflectionInfo(iter([request]))
    names = [
        service.name
        async for response in call
        for service in response.list_services_response.service
    ]

    assert "trustfirst.identity.v1.IdentityService" in names
    assert "grpc.health.v1.Health" in names
