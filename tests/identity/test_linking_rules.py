"""Linking rules over real gRPC: blocklist, unique kinds, priority, limits, quarantine."""

from __future__ import annotations

from typing import TypeAlias

import grpc
import pytest
import redis.asyncio as aioredis

from tests.identity.conftest import (
    ACCOUNT_ID,
    COOKIE_ID,
    DEVICE_ID,
    EMAIL,
    LOYALTY_ID,
    PHONE,
    POS_TOKEN,
    ident,
    lookup,
    rejections,
    resolve,
    running_identity,
)
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

Stub: TypeAlias = "identity_pb2_grpc.IdentityServiceAsyncStub"

PLACEHOLDERS = ["null", "undefined", "[object Object]", "0", "-1", "", "anonymous"]
PLACEHOLDER_KINDS = [DEVICE_ID, COOKIE_ID, EMAIL, PHONE, LOYALTY_ID, POS_TOKEN]


async def check_placeholders_never_merge(stub: Stub) -> None:
    """Send every placeholder of every kind with two different accounts each."""
    profiles: set[str] = set()
    calls = 0
    for kind in PLACEHOLDER_KINDS:
        for placeholder in PLACEHOLDERS:
            for _ in range(2):
                account = ident(ACCOUNT_ID, f"acct-{calls}")
                calls += 1
                response = await resolve(stub, account, ident(kind, placeholder))
                profiles.add(response.profile_id)
                assert response.created is True, (kind, placeholder)
                assert rejections(response) == [
                    (
                        1,
                        "REJECTION_REASON_BLOCKED_VALUE",
                        "IDENTIFIER_KIND_UNSPECIFIED",
                        False,
                    )
                ], (kind, placeholder)
            found = await lookup(stub, ident(kind, placeholder))
            assert found.found is False, (kind, placeholder)

    assert len(profiles) == calls
    assert calls == 84


async def test_placeholders_default_rules(stub: Stub) -> None:
    await check_placeholders_never_merge(stub)


async def test_placeholders_without_unique_kinds(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    # Without unique kinds only the blocklist keeps the accounts apart.
    async with running_identity(redis_url, unique_kinds=[]) as stub:
        await check_placeholders_never_merge(stub)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (EMAIL, " NULL "),
        (EMAIL, "TEST@TEST.COM"),
        (DEVICE_ID, "00000000-0000-0000-0000-000000000000"),
    ],
)
async def test_placeholder_variant_blocked(
    stub: Stub, kind: identity_pb2.IdentifierKind.ValueType, value: str
) -> None:
    response = await resolve(stub, ident(ACCOUNT_ID, "acct-1"), ident(kind, value))

    assert [item.index for item in response.rejected_identifiers] == [1]


async def test_only_placeholders_links_nothing(stub: Stub) -> None:
    response = await resolve(stub, ident(DEVICE_ID, "null"), ident(COOKIE_ID, "0"))

    assert response.profile_id == ""
    assert response.created is False
    assert [item.index for item in response.rejected_identifiers] == [0, 1]


async def test_lookup_skips_placeholder(stub: Stub) -> None:
    created = await resolve(stub, ident(EMAIL, "ana@example.com"))

    found = await lookup(
        stub, ident(DEVICE_ID, "null"), ident(EMAIL, "ana@example.com")
    )

    assert found.profile_id == created.profile_id
    assert found.matched_index == 1


async def test_unique_kind_conflict(stub: Stub) -> None:
    first = await resolve(
        stub, ident(ACCOUNT_ID, "acct-1"), ident(EMAIL, "family@example.com")
    )

    second = await resolve(
        stub, ident(EMAIL, "family@example.com"), ident(ACCOUNT_ID, "acct-2")
    )
    email_owner = await lookup(stub, ident(EMAIL, "family@example.com"))
    account_owner = await lookup(stub, ident(ACCOUNT_ID, "acct-2"))

    assert second.created is True
    assert second.profile_id != first.profile_id
    assert rejections(second) == [
        (
            0,
            "REJECTION_REASON_UNIQUE_KIND_CONFLICT",
            "IDENTIFIER_KIND_ACCOUNT_ID",
            False,
        )
    ]
    assert "account_id is a unique kind" in second.rejected_identifiers[0].description
    assert "family" not in second.rejected_identifiers[0].description
    assert email_owner.profile_id == first.profile_id
    assert account_owner.profile_id == second.profile_id


async def test_two_accounts_in_request(stub: Stub) -> None:
    response = await resolve(
        stub,
        ident(ACCOUNT_ID, "acct-1"),
        ident(ACCOUNT_ID, "acct-2"),
        ident(EMAIL, "ana@example.com"),
    )

    assert response.created is True
    assert rejections(response) == [
        (
            1,
            "REJECTION_REASON_UNIQUE_KIND_CONFLICT",
            "IDENTIFIER_KIND_ACCOUNT_ID",
            False,
        )
    ]
    assert (await lookup(stub, ident(ACCOUNT_ID, "acct-2"))).found is False


async def test_conflict_links_what_is_safe(stub: Stub) -> None:
    known = await resolve(stub, ident(ACCOUNT_ID, "acct-1"), ident(DEVICE_ID, "tablet"))

    response = await resolve(
        stub,
        ident(DEVICE_ID, "tablet"),
        ident(ACCOUNT_ID, "acct-2"),
        ident(EMAIL, "bo@example.com"),
        ident(COOKIE_ID, "ck-bo"),
    )
    cookie_owner = await lookup(stub, ident(COOKIE_ID, "ck-bo"))

    assert response.profile_id != known.profile_id
    assert [item.index for item in response.rejected_identifiers] == [0]
    assert cookie_owner.profile_id == response.profile_id


async def test_priority_decides_rejection(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    # The device ranks above the account, so it is linked first and the account is
    # the one that conflicts.
    async with running_identity(redis_url, kind_priority=["device_id"]) as stub:
        known = await resolve(
            stub, ident(ACCOUNT_ID, "acct-1"), ident(DEVICE_ID, "tablet")
        )

        response = await resolve(
            stub, ident(ACCOUNT_ID, "acct-2"), ident(DEVICE_ID, "tablet")
        )

    assert response.profile_id == known.profile_id
    assert response.created is False
    assert rejections(response) == [
        (
            0,
            "REJECTION_REASON_UNIQUE_KIND_CONFLICT",
            "IDENTIFIER_KIND_ACCOUNT_ID",
            False,
        )
    ]


async def test_default_priority_rejects_device(stub: Stub) -> None:
    known = await resolve(stub, ident(ACCOUNT_ID, "acct-1"), ident(DEVICE_ID, "tablet"))

    response = await resolve(
        stub, ident(ACCOUNT_ID, "acct-2"), ident(DEVICE_ID, "tablet")
    )

    assert response.profile_id != known.profile_id
    assert response.created is True
    assert rejections(response) == [
        (
            1,
            "REJECTION_REASON_UNIQUE_KIND_CONFLICT",
            "IDENTIFIER_KIND_ACCOUNT_ID",
            False,
        )
    ]


async def test_kind_limit_new_value(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    async with running_identity(
        redis_url, max_values_per_kind={"device_id": 2}
    ) as stub:
        first = await resolve(
            stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d1")
        )
        await resolve(stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d2"))

        third = await resolve(
            stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d3")
        )
        d3 = await lookup(stub, ident(DEVICE_ID, "d3"))

    assert third.profile_id == first.profile_id
    assert rejections(third) == [
        (1, "REJECTION_REASON_KIND_LIMIT_EXCEEDED", "IDENTIFIER_KIND_DEVICE_ID", False)
    ]
    assert (
        "more device_id values in one profile than the maximum"
        in third.rejected_identifiers[0].description
    )
    assert d3.found is False


async def test_kind_limit_blocks_merge(
    redis_url: str, redis_client: aioredis.Redis
) -> None:
    async with running_identity(
        redis_url, max_values_per_kind={"device_id": 2}
    ) as stub:
        ana = await resolve(
            stub,
            ident(EMAIL, "ana@example.com"),
            ident(DEVICE_ID, "d1"),
            ident(DEVICE_ID, "d2"),
        )
        bo = await resolve(stub, ident(EMAIL, "bo@example.com"), ident(DEVICE_ID, "d3"))

        response = await resolve(
            stub, ident(EMAIL, "ana@example.com"), ident(EMAIL, "bo@example.com")
        )
        bo_now = await lookup(stub, ident(EMAIL, "bo@example.com"))

    assert response.profile_id == ana.profile_id
    assert list(response.merged_profile_ids) == []
    assert rejections(response) == [
        (1, "REJECTION_REASON_KIND_LIMIT_EXCEEDED", "IDENTIFIER_KIND_DEVICE_ID", False)
    ]
    assert bo_now.profile_id == bo.profile_id


async def test_merge_within_limits(stub: Stub) -> None:
    ana = await resolve(stub, ident(EMAIL, "ana@example.com"), ident(DEVICE_ID, "d1"))
    other = await resolve(stub, ident(PHONE, "020 7946 0958"), ident(DEVICE_ID, "d2"))

    response = await resolve(
        stub, ident(PHONE, "020 7946 0958"), ident(EMAIL, "ana@example.com")
    )

    assert {response.profile_id, *response.merged_profile_ids} == {
        ana.profile_id,
        other.profile_id,
    }
    assert list(response.rejected_identifiers) == []


async def test_shared_device_quarantined(stub: Stub) -> None:
    responses = [
        await resolve(
            stub, ident(ACCOUNT_ID, f"acct-{number}"), ident(DEVICE_ID, "store-tablet")
        )
        for number in range(200)
    ]

    device_linked = [
        number
        for number, response in enumerate(responses)
        if not any(item.index == 1 for item in response.rejected_identifiers)
    ]
    quarantined_by = [
        number
        for number, response in enumerate(responses)
        if any(item.quarantined for item in response.rejected_identifiers)
    ]
    reasons = {
        identity_pb2.RejectionReason.Name(response.rejected_identifiers[0].reason)
        for response in responses[6:]
    }
    device = await lookup(stub, ident(DEVICE_ID, "store-tablet"))
    listed = await stub.ListQuarantinedValues(
        identity_pb2.ListQuarantinedValuesRequest()
    )

    # The first account links the device. Five more profiles claim it (threshold 5),
    # and the sixth distinct claimant quarantines it.
    assert len({response.profile_id for response in responses}) == 200
    assert all(response.created for response in responses)
    assert len(device_linked) <= 5
    assert device_linked == [0]
    assert quarantined_by == [5]
    assert reasons == {"REJECTION_REASON_QUARANTINED"}
    assert device.found is False
    assert len(listed.values) == 1
    assert listed.values[0].kind == DEVICE_ID
    assert listed.values[0].profile_count == 6
    for number in (0, 5, 199):
        account = await lookup(stub, ident(ACCOUNT_ID, f"acct-{number}"))
        assert account.profile_id == responses[number].profile_id


async def test_quarantine_removes_link(stub: Stub) -> None:
    first = await resolve(
        stub,
        ident(ACCOUNT_ID, "acct-0"),
        ident(DEVICE_ID, "kiosk"),
        ident(EMAIL, "a@example.com"),
    )
    for number in range(1, 6):
        await resolve(
            stub, ident(ACCOUNT_ID, f"acct-{number}"), ident(DEVICE_ID, "kiosk")
        )

    profile = await stub.GetProfile(
        identity_pb2.GetProfileRequest(profile_id=first.profile_id)
    )

    kinds = sorted(item.kind for item in profile.profile.identifiers)
    assert kinds == sorted([ACCOUNT_ID, EMAIL])


async def test_quarantine_off(redis_url: str, redis_client: aioredis.Redis) -> None:
    async with running_identity(redis_url, quarantine_threshold=0) as stub:
        first = await resolve(
            stub, ident(ACCOUNT_ID, "acct-0"), ident(DEVICE_ID, "tablet")
        )
        for number in range(1, 20):
            await resolve(
                stub, ident(ACCOUNT_ID, f"acct-{number}"), ident(DEVICE_ID, "tablet")
            )

        device = await lookup(stub, ident(DEVICE_ID, "tablet"))
        listed = await stub.ListQuarantinedValues(
            identity_pb2.ListQuarantinedValuesRequest()
        )

    assert device.profile_id == first.profile_id
    assert list(listed.values) == []


async def test_unique_kind_never_quarantined(stub: Stub) -> None:
    await resolve(stub, ident(ACCOUNT_ID, "acct-main"))
    for number in range(10):
        await resolve(stub, ident(ACCOUNT_ID, f"acct-{number}"))
        await resolve(
            stub, ident(ACCOUNT_ID, "acct-main"), ident(ACCOUNT_ID, f"acct-{number}")
        )

    found = await lookup(stub, ident(ACCOUNT_ID, "acct-main"))
    listed = await stub.ListQuarantinedValues(
        identity_pb2.ListQuarantinedValuesRequest()
    )

    assert found.found is True
    assert list(listed.values) == []


async def quarantine_devices(stub: Stub, count: int) -> None:
    """Quarantine count devices, each claimed by six account profiles."""
    for device in range(count):
        for number in range(6):
            await resolve(
                stub,
                ident(ACCOUNT_ID, f"acct-{device}-{number}"),
                ident(DEVICE_ID, f"shared-{device}"),
            )


async def test_quarantine_list_pages(stub: Stub) -> None:
    await quarantine_devices(stub, 3)

    first = await stub.ListQuarantinedValues(
        identity_pb2.ListQuarantinedValuesRequest(page_size=2)
    )
    second = await stub.ListQuarantinedValues(
        identity_pb2.ListQuarantinedValuesRequest(
            page_size=2, page_token=first.next_page_token
        )
    )

    hashes = [value.value_hash for value in [*first.values, *second.values]]
    assert len(first.values) == 2
    assert first.next_page_token == "2"
    assert len(second.values) == 1
    assert second.next_page_token == ""
    assert len(set(hashes)) == 3
    assert (
        first.values[0].quarantine_time.ToDatetime()
        <= second.values[0].quarantine_time.ToDatetime()
    )


async def test_release_quarantined(stub: Stub) -> None:
    await quarantine_devices(stub, 1)
    listed = await stub.ListQuarantinedValues(
        identity_pb2.ListQuarantinedValuesRequest()
    )
    value = listed.values[0]
    identifier = identity_pb2.IdentifierHash(
        kind=value.kind, value_hash=value.value_hash
    )

    await stub.ReleaseQuarantinedValue(
        identity_pb2.ReleaseQuarantinedValueRequest(identifier=identifier)
    )
    after = await stub.ListQuarantinedValues(
        identity_pb2.ListQuarantinedValuesRequest()
    )
    relinked = await resolve(
        stub, ident(EMAIL, "new@example.com"), ident(DEVICE_ID, "shared-0")
    )
    device = await lookup(stub, ident(DEVICE_ID, "shared-0"))

    assert list(after.values) == []
    assert list(relinked.rejected_identifiers) == []
    assert device.profile_id == relinked.profile_id


async def test_release_not_quarantined(stub: Stub) -> None:
    identifier = identity_pb2.IdentifierHash(kind=DEVICE_ID, value_hash="a" * 64)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ReleaseQuarantinedValue(
            identity_pb2.ReleaseQuarantinedValueRequest(identifier=identifier)
        )

    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
