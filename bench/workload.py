"""The benchmark's data and requests: CDNOW customers loaded into a running suite.

Customers are registered, given consents and features the way ``trustfirst demo`` does
it, so the benchmark's Decide calls read the same kind of state. Every request is
serialized once here, before any run.
"""

import random
from dataclasses import dataclass

import grpc

from services.decision.features import feature_vector
from services.decision.snapshots import aggregate_purchases
from shared.channels import create_channel
from suite.dataset import Customer, load_features
from suite.demo import (
    REPLAY_TIME,
    bounded_gather,
    customer_identifiers,
    seeded_consents,
)
from suite.launcher import Suite
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

DECIDE_METHOD = "/trustfirst.decision.v1.DecisionService/Decide"
CHECK_CONSENT_METHOD = "/trustfirst.consent.v1.ConsentService/CheckConsent"
LOOKUP_METHOD = "/trustfirst.identity.v1.IdentityService/Lookup"
HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check"

# Pairs per CheckConsent call in the consent scenario.
CHECK_CONSENT_PAIRS = 20
# Calls in flight while the data is loaded.
LOAD_CONCURRENCY = 32
LOAD_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Workload:
    """The loaded customers, their profile ids and the catalog's touchpoints."""

    customers: list[Customer]
    profiles: dict[str, str]
    touchpoints: list[tuple[str, consent_pb2.Channel.ValueType]]
    seed: int


async def load_workload(suite: Suite, customers: list[Customer], seed: int) -> Workload:
    """Register customers, record their seeded consents and store their features."""
    identity = create_channel(suite.target("identity"))
    consent = create_channel(suite.target("consent"))
    decision = create_channel(suite.target("decision"))
    try:
        profiles = await _resolve_all(identity, customers)
        await _record_consents(consent, profiles, seed)
        await load_features(suite.redis_url, customers, profiles, REPLAY_TIME)
        touchpoints = await _touchpoints(decision)
    finally:
        for channel in (identity, consent, decision):
            await channel.close()
    return Workload(customers, profiles, touchpoints, seed)


async def _resolve_all(
    channel: grpc.aio.Channel, customers: list[Customer]
) -> dict[str, str]:
    stub = identity_pb2_grpc.IdentityServiceStub(channel)
    profiles: dict[str, str] = {}

    async def resolve(customer: Customer) -> None:
        reply = await stub.Resolve(
            identity_pb2.ResolveRequest(
                identifiers=customer_identifiers(customer.customer_id),
                source="bench-import",
            ),
            timeout=LOAD_TIMEOUT_SECONDS,
        )
        profiles[customer.customer_id] = reply.profile_id

    await bounded_gather(customers, resolve, LOAD_CONCURRENCY)
    return profiles


async def _record_consents(
    channel: grpc.aio.Channel, profiles: dict[str, str], seed: int
) -> None:
    stub = consent_pb2_grpc.ConsentServiceStub(channel)

    async def record(item: tuple[str, str]) -> None:
        customer_id, profile_id = item
        for number, changes in enumerate(seeded_consents(customer_id, seed)):
            await stub.RecordConsent(
                consent_pb2.RecordConsentRequest(
                    subject_id=profile_id,
                    changes=changes,
                    source="bench-import",
                    notice_version="2026-01",
                    idempotency_key=f"bench-import:{customer_id}:{number}",
                ),
                timeout=LOAD_TIMEOUT_SECONDS,
            )

    await bounded_gather(profiles.items(), record, LOAD_CONCURRENCY)


async def _touchpoints(
    channel: grpc.aio.Channel,
) -> list[tuple[str, consent_pb2.Channel.ValueType]]:
    """Return the (touchpoint, channel) pairs the catalog offers at least one action at."""
    stub = decision_pb2_grpc.DecisionServiceStub(channel)
    catalog = await stub.ListActions(
        decision_pb2.ListActionsRequest(), timeout=LOAD_TIMEOUT_SECONDS
    )
    named = {
        touchpoint for action in catalog.actions for touchpoint in action.touchpoints
    }
    pairs = {
        (touchpoint, action.channel)
        for action in catalog.actions
        for touchpoint in (action.touchpoints or named)
    }
    return sorted(pairs)


def decide_requests(
    workload: Workload, by_identifiers: bool = False
) -> tuple[bytes, ...]:
    """Return one serialized DecideRequest per customer at a seeded touchpoint.

    The customer is named by profile id, or by identifiers (so identity's Lookup is on
    the path) when by_identifiers is true. Every request decides as of REPLAY_TIME, the
    time the stored features were computed for.
    """
    rng = random.Random(workload.seed)
    context = decision_pb2.DecisionContext()
    context.event_time.FromDatetime(REPLAY_TIME)
    requests = []
    for customer in workload.customers:
        touchpoint, channel = rng.choice(workload.touchpoints)
        request = decision_pb2.DecideRequest(
            touchpoint=touchpoint, channel=channel, context=context
        )
        if by_identifiers:
            request.identifiers.extend(customer_identifiers(customer.customer_id))
        else:
            request.profile_id = workload.profiles[customer.customer_id]
        requests.append(request.SerializeToString())
    return tuple(requests)


def check_consent_pairs() -> list[consent_pb2.PurposeChannel]:
    """Return CHECK_CONSENT_PAIRS distinct (purpose, channel) pairs, purpose first."""
    purposes = [value for value in consent_pb2.Purpose.values() if value]
    channels = [value for value in consent_pb2.Channel.values() if value]
    pairs = [
        consent_pb2.PurposeChannel(purpose=purpose, channel=channel)
        for purpose in purposes
        for channel in channels
    ]
    if len(pairs) < CHECK_CONSENT_PAIRS:
        raise ValueError(f"the consent vocabulary has only {len(pairs)} pairs")
    return pairs[:CHECK_CONSENT_PAIRS]


def check_consent_requests(workload: Workload) -> tuple[bytes, ...]:
    """Return one serialized CheckConsentRequest of 20 pairs per customer."""
    pairs = check_consent_pairs()
    return tuple(
        consent_pb2.CheckConsentRequest(
            subject_id=workload.profiles[customer.customer_id], pairs=pairs
        ).SerializeToString()
        for customer in workload.customers
    )


def lookup_requests(workload: Workload) -> tuple[bytes, ...]:
    """Return one serialized LookupRequest per customer, with their two identifiers."""
    return tuple(
        identity_pb2.LookupRequest(
            identifiers=customer_identifiers(customer.customer_id)
        ).SerializeToString()
        for customer in workload.customers
    )


def feature_rows(customers: list[Customer]) -> list[list[float]]:
    """Return each customer's model input as of REPLAY_TIME, as Decide computes it.

    A customer with no purchase before REPLAY_TIME is left out.
    """
    purchases = [purchase for customer in customers for purchase in customer.purchases]
    aggregates = aggregate_purchases(purchases, before=REPLAY_TIME.date())
    as_of = int(REPLAY_TIME.timestamp())
    return [
        feature_vector(aggregates[customer.customer_id], as_of)
        for customer in customers
        if customer.customer_id in aggregates
    ]
