"""gRPC servicer of trustfirst.identity.v1.IdentityService: checks, converts, delegates."""

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.identity.graph import IdentityGraph
from services.identity.hashing import IdentifierHasher
from services.identity.models import Link, Profile
from services.identity.normalise import Normaliser
from services.identity.validation import (
    KIND_TO_PROTO,
    check_profile_id,
    check_request_id,
    check_source,
    read_identifiers,
)
from shared.errors import NotFound, Violations, handle_errors
from shared.logs import request_id_var
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

ERROR_DOMAIN = "identity.trustfirst.dev"
SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name

Context = grpc.aio.ServicerContext[Any, Any]


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    """Validates requests, hashes identifiers and calls the identity graph."""

    def __init__(
        self, graph: IdentityGraph, normaliser: Normaliser, hasher: IdentifierHasher
    ) -> None:
        self._graph = graph
        self._normaliser = normaliser
        self._hasher = hasher

    @handle_errors(ERROR_DOMAIN)
    async def Resolve(
        self, request: identity_pb2.ResolveRequest, context: Context
    ) -> identity_pb2.ResolveResponse:
        violations = Violations()
        check_request_id(request.request_id, violations)
        if request.request_id and not violations.items:
            request_id_var.set(request.request_id)

        identifiers = read_identifiers(
            request.identifiers, self._normaliser, self._hasher, violations
        )
        check_source(request.source, violations)
        violations.raise_if_any()

        result = await self._graph.resolve(identifiers, request.source)
        return identity_pb2.ResolveResponse(
            profile_id=result.profile_id,
            created=result.created,
            merged_profile_ids=result.merged_profile_ids,
        )

    @handle_errors(ERROR_DOMAIN)
    async def Lookup(
        self, request: identity_pb2.LookupRequest, context: Context
    ) -> identity_pb2.LookupResponse:
        violations = Violations()
        identifiers = read_identifiers(
            request.identifiers, self._normaliser, self._hasher, violations
        )
        violations.raise_if_any()

        match = await self._graph.lookup(identifiers)
        if match is None:
            return identity_pb2.LookupResponse(found=False)
        return identity_pb2.LookupResponse(
            found=True, profile_id=match.profile_id, matched_index=match.index
        )

    @handle_errors(ERROR_DOMAIN)
    async def GetProfile(
        self, request: identity_pb2.GetProfileRequest, context: Context
    ) -> identity_pb2.GetProfileResponse:
        violations = Violations()
        check_profile_id(request.profile_id, violations)
        violations.raise_if_any()

        profile = await self._graph.get_profile(request.profile_id)
        if profile is None:
            raise NotFound(
                f"profile {request.profile_id} not found",
                metadata={"profile_id": request.profile_id},
            )
        return identity_pb2.GetProfileResponse(profile=_profile_to_proto(profile))


def _profile_to_proto(profile: Profile) -> identity_pb2.Profile:
    create_time = Timestamp()
    create_time.FromDatetime(profile.create_time)
    return identity_pb2.Profile(
        profile_id=profile.profile_id,
        create_time=create_time,
        identifiers=[_link_to_proto(link) for link in profile.links],
        merged_profile_ids=profile.merged_profile_ids,
    )


def _link_to_proto(link: Link) -> identity_pb2.LinkedIdentifier:
    link_time = Timestamp()
    link_time.FromDatetime(link.link_time)
    return identity_pb2.LinkedIdentifier(
        kind=KIND_TO_PROTO[link.identifier.kind],
        value_hash=link.identifier.value_hash,
        source=link.source,
        link_time=link_time,
    )
