"""Calls to the identity and consent services, each under its own deadline."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2

from services.decision.catalog import ConsentPair
from shared.calls import unary_call
from shared.errors import FieldViolation, InvalidArgument
from shared.telemetry import CHECK_CONSENT_METHOD
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

logger = logging.getLogger(__name__)

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
LOOKUP_METHOD = "/trustfirst.identity.v1.IdentityService/Lookup"


class IdentityUnavailable(Exception):
    """Identity failed or missed its deadline."""


class ConsentUnavailable(Exception):
    """Consent failed, missed its deadline, or returned results for other pairs."""


@dataclass(frozen=True)
class ConsentResult:
    """Whether each requested pair is allowed, in request order, and the ledger token."""

    allowed: tuple[bool, ...]
    token: str


class IdentityClient:
    """Read-only profile lookups in the identity service."""

    def __init__(self, channel: grpc.aio.Channel, deadline_seconds: float) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)
        self._deadline_seconds = deadline_seconds

    async def lookup(
        self, identifiers: Sequence[identity_pb2.Identifier]
    ) -> str | None:
        """Return the profile id of the first known identifier, or None.

        Raises InvalidArgument with identity's field violations when identity rejects an
        identifier, and IdentityUnavailable on any other failure or a missed deadline.
        """
        request = identity_pb2.LookupRequest(identifiers=identifiers)
        try:
            response = await unary_call(
                self._stub.Lookup, LOOKUP_METHOD, request, self._deadline_seconds
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(_field_violations(error)) from error
            raise IdentityUnavailable(
                f"identity Lookup failed: {error.code().name}"
            ) from error
        return response.profile_id if response.found else None


class ConsentClient:
    """Batch consent checks in the consent service."""

    def __init__(self, channel: grpc.aio.Channel, deadline_seconds: float) -> None:
        self._stub = consent_pb2_grpc.ConsentServiceStub(channel)
        self._deadline_seconds = deadline_seconds

    async def check(
        self, profile_id: str, pairs: Sequence[ConsentPair]
    ) -> ConsentResult:
        """Check every pair for profile_id in one call.

        Raises ConsentUnavailable on a failure, a missed deadline, or a response whose
        pairs differ from the request, so a caller can fail closed.
        """
        request = consent_pb2.CheckConsentRequest(
            subject_id=profile_id,
            pairs=[
                consent_pb2.PurposeChannel(purpose=purpose, channel=channel)
                for purpose, channel in pairs
            ],
        )
        try:
            response = await unary_call(
                self._stub.CheckConsent,
                CHECK_CONSENT_METHOD,
                request,
                self._deadline_seconds,
            )
        except grpc.aio.AioRpcError as error:
            raise ConsentUnavailable(
                f"consent CheckConsent failed: {error.code().name}"
            ) from error

        returned = [(result.purpose, result.channel) for result in response.results]
        if returned != list(pairs):
            raise ConsentUnavailable(
                f"consent returned {len(returned)} pairs that differ from the "
                f"{len(pairs)} requested"
            )
        allowed = tuple(result.allowed for result in response.results)
        return ConsentResult(allowed=allowed, token=response.consistency_token)


def _field_violations(error: grpc.aio.AioRpcError) -> list[FieldViolation]:
    """Return the BadRequest field violations of a status, or one naming identifiers."""
    for key, value in error.trailing_metadata() or ():
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(bad_request):
                return [
                    FieldViolation(v.field, v.description)
                    for v in bad_request.field_violations
                ] or [FieldViolation("identifiers", error.details() or "invalid")]
    return [FieldViolation("identifiers", error.details() or "rejected by identity")]
