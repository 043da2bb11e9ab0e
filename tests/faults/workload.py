"""Calls of the fault tests: customers with consent and purchases, and one Decide."""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

CALL_TIMEOUT_SECONDS = 5.0

TOUCHPOINT = "home"
CHANNEL = consent_pb2.CHANNEL_WEB
"""Where the fault tests decide: a web content action needs only personalisation."""

GRANTED_PAIRS = [
    (purpose, channel)
    for purpose in (consent_pb2.PURPOSE_PERSONALISATION, consent_pb2.PURPOSE_MARKETING)
    for channel in (consent_pb2.CHANNEL_WEB, consent_pb2.CHANNEL_EMAIL)
]


@dataclass
class Stubs:
    """Async stubs of the three services over plaintext channels."""

    identity: identity_pb2_grpc.IdentityServiceStub
    consent: consent_pb2_grpc.ConsentServiceStub
    decision: decision_pb2_grpc.DecisionServiceStub
    channels: list[grpc.aio.Channel]

    @classmethod
    def connect(cls, targets: dict[str, str]) -> Stubs:
        channels = {
            name: grpc.aio.insecure_channel(target) for name, target in targets.items()
        }
        return cls(
            identity_pb2_grpc.IdentityServiceStub(channels["identity"]),
            consent_pb2_grpc.ConsentServiceStub(channels["consent"]),
            decision_pb2_grpc.DecisionServiceStub(channels["decision"]),
            list(channels.values()),
        )

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


def email(name: str) -> identity_pb2.Identifier:
    return identity_pb2.Identifier(
        kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value=f"{name}@example.com"
    )


def consent_request(
    profile_id: str, key: str, action: int = consent_pb2.CONSENT_ACTION_GRANT
) -> consent_pb2.RecordConsentRequest:
    return consent_pb2.RecordConsentRequest(
        subject_id=profile_id,
        source="preference-center",
        notice_version="2026-01",
        idempotency_key=key,
        changes=[
            consent_pb2.ConsentChange(purpose=purpose, channel=channel, action=action)
            for purpose, channel in GRANTED_PAIRS
        ],
    )


def purchase_request(
    profile_id: str, event_id: str, days_ago: int
) -> decision_pb2.RecordOutcomeRequest:
    event_time = Timestamp(seconds=int(time.time()) - days_ago * 86_400)
    return decision_pb2.RecordOutcomeRequest(
        profile_id=profile_id,
        kind=decision_pb2.OUTCOME_KIND_PURCHASE,
        amount_cents=4_500,
        quantity=2,
        event_time=event_time,
        event_id=event_id,
    )


def decide_request(profile_id: str) -> decision_pb2.DecideRequest:
    return decision_pb2.DecideRequest(
        profile_id=profile_id, touchpoint=TOUCHPOINT, channel=CHANNEL
    )


async def register_customers(stubs: Stubs, count: int, prefix: str) -> list[str]:
    """Create count profiles that granted every pair and bought three times."""
    profiles = []
    for index in range(count):
        resolved = await stubs.identity.Resolve(
            identity_pb2.ResolveRequest(
                identifiers=[email(f"{prefix}{index}")], source="web"
            ),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        profile_id = resolved.profile_id
        await stubs.consent.RecordConsent(
            consent_request(profile_id, f"setup-{profile_id}"),
            timeout=CALL_TIMEOUT_SECONDS,
        )
        for days_ago in (40, 20, 5):
            await stubs.decision.RecordOutcome(
                purchase_request(
                    profile_id, f"setup-{profile_id}-{days_ago}", days_ago
                ),
                timeout=CALL_TIMEOUT_SECONDS,
            )
        profiles.append(profile_id)
    return profiles


async def decide(stubs: Stubs, profile_id: str) -> decision_pb2.DecideResponse:
    response: decision_pb2.DecideResponse = await stubs.decision.Decide(
        decide_request(profile_id), timeout=CALL_TIMEOUT_SECONDS
    )
    return response
