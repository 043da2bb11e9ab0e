"""A slice of CDNOW customers sent through a running suite, as the demo does it.

Each customer is resolved with an email, a loyalty id and a phone number, gets the demo's
seeded consents and their purchase features, then one Decide (by identifiers for every
other customer, else by profile id) and one purchase outcome.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import grpc

from shared.channels import create_channel
from suite.dataset import Customer, load_customers, load_features
from suite.demo import (
    REPLAY_TIME,
    bounded_gather,
    customer_identifiers,
    seeded_consents,
)
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

CONCURRENCY = 8
CALL_TIMEOUT_SECONDS = 10.0


def phone_number(customer_id: str) -> str:
    """Return a London number of the range Ofcom keeps for drama, unique per customer."""
    return f"+44 20 7946 0{int(customer_id) % 1000:03d}"


def identifiers_of(customer: Customer) -> list[identity_pb2.Identifier]:
    phone = identity_pb2.Identifier(
        kind=identity_pb2.IDENTIFIER_KIND_PHONE,
        value=phone_number(customer.customer_id),
    )
    return [*customer_identifiers(customer.customer_id), phone]


@dataclass
class WorkloadResult:
    """The workload's profiles, and the status or outcome of each of its decisions."""

    profiles: dict[str, str] = field(default_factory=dict)
    decided_profiles: dict[str, str] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    outcomes: int = 0


async def _resolve_and_consent(
    targets: Mapping[str, str], customers: list[Customer], result: WorkloadResult
) -> None:
    async with (
        create_channel(targets["identity"]) as identity_channel,
        create_channel(targets["consent"]) as consent_channel,
    ):
        identity = identity_pb2_grpc.IdentityServiceStub(identity_channel)
        consent = consent_pb2_grpc.ConsentServiceStub(consent_channel)

        async def register(customer: Customer) -> None:
            reply = await identity.Resolve(
                identity_pb2.ResolveRequest(
                    identifiers=identifiers_of(customer), source="workload"
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
            result.profiles[customer.customer_id] = reply.profile_id
            for changes in seeded_consents(customer.customer_id, seed=3):
                await consent.RecordConsent(
                    consent_pb2.RecordConsentRequest(
                        subject_id=reply.profile_id,
                        changes=changes,
                        source="workload",
                        notice_version="2026-01",
                    ),
                    timeout=CALL_TIMEOUT_SECONDS,
                )

        await bounded_gather(customers, register, CONCURRENCY)


async def _decide_and_record(
    targets: Mapping[str, str], customers: list[Customer], result: WorkloadResult
) -> None:
    async with create_channel(targets["decision"]) as channel:
        decision = decision_pb2_grpc.DecisionServiceStub(channel)

        async def decide(item: tuple[int, Customer]) -> None:
            number, customer = item
            request = decision_pb2.DecideRequest(
                touchpoint="checkout", channel=consent_pb2.CHANNEL_WEB
            )
            if number % 2:
                request.identifiers.extend(identifiers_of(customer))
            else:
                request.profile_id = result.profiles[customer.customer_id]
            try:
                reply = await decision.Decide(request, timeout=CALL_TIMEOUT_SECONDS)
                await decision.RecordOutcome(
                    decision_pb2.RecordOutcomeRequest(
                        identifiers=identifiers_of(customer)[:1],
                        kind=decision_pb2.OUTCOME_KIND_PURCHASE,
                        amount_cents=2599,
                        quantity=1,
                        event_id=f"workload-{customer.customer_id}",
                    ),
                    timeout=CALL_TIMEOUT_SECONDS,
                )
            except grpc.aio.AioRpcError as error:
                result.errors[error.code().name] += 1
                return
            result.decided_profiles[customer.customer_id] = reply.profile_id
            result.outcomes += 1
            answer = (
                decision_pb2.SilenceReason.Name(reply.silence_reason)
                if reply.silent
                else reply.action_id
            )
            result.answers[answer] += 1

        await bounded_gather(enumerate(customers), decide, CONCURRENCY)


async def run_workload(
    targets: Mapping[str, str], redis_url: str, customers: int
) -> WorkloadResult:
    """Send the first customers of CDNOW through the suite at targets; return the result.

    A failed Resolve or RecordConsent raises; a failed Decide or RecordOutcome is counted
    in the result's errors by status code.
    """
    selected = load_customers(None, customers)
    result = WorkloadResult()
    await _resolve_and_consent(targets, selected, result)
    await load_features(redis_url, selected, result.profiles, REPLAY_TIME)
    await _decide_and_record(targets, selected, result)
    return result
