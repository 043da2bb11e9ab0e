"""gRPC servicer of trustfirst.identity.v1.IdentityService: checks, converts, delegates."""

from typing import Any

import grpc

from services.identity import convert
from services.identity.graph import IdentifierNotLinked, IdentityGraph
from services.identity.models import (
    Explanation,
    HashedIdentifier,
    IdentifierState,
    IdentifierStatus,
    RejectedIdentifier,
    Rejection,
    ResolveResult,
)
from services.identity.quarantine import QuarantineRegistry
from services.identity.subject_rights import SubjectRights
from services.identity.validation import (
    MAX_IDENTIFIERS,
    Blocked,
    IdentifierReader,
    check_page,
    check_profile_id,
    check_request_id,
    check_source,
    read_identifier_hash,
)
from shared.errors import FailedPrecondition, NotFound, Violations, handle_errors
from shared.logs import request_id_var
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

ERROR_DOMAIN = "identity.trustfirst.dev"
SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name

MAX_SPLIT_IDENTIFIERS = 256
"""Maximum number of identifiers one SplitProfile names, clear and hashed together."""

Context = grpc.aio.ServicerContext[Any, Any]


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    """Validates requests, hashes identifiers and calls the identity graph."""

    def __init__(
        self,
        graph: IdentityGraph,
        reader: IdentifierReader,
        subject_rights: SubjectRights,
        quarantine: QuarantineRegistry,
    ) -> None:
        self._graph = graph
        self._reader = reader
        self._subject_rights = subject_rights
        self._quarantine = quarantine

    @handle_errors(ERROR_DOMAIN)
    async def Resolve(
        self, request: identity_pb2.ResolveRequest, context: Context
    ) -> identity_pb2.ResolveResponse:
        violations = Violations()
        _use_request_id(request.request_id, violations)
        batch = self._reader.read_batch(request.identifiers, violations)
        check_source(request.source, violations)
        violations.raise_if_any()

        result = ResolveResult(profile_id="", created=False, merged_profile_ids=[])
        if batch.identifiers:
            result = await self._graph.resolve(batch.identifiers, request.source)

        rejected = [
            convert.rejection_to_proto(
                RejectedIdentifier(index, Rejection.BLOCKED_VALUE), index
            )
            for index in batch.blocked
        ]
        rejected += [
            convert.rejection_to_proto(item, batch.indices[item.index])
            for item in result.rejected
        ]
        rejected.sort(key=lambda item: item.index)
        return identity_pb2.ResolveResponse(
            profile_id=result.profile_id,
            created=result.created,
            merged_profile_ids=result.merged_profile_ids,
            rejected_identifiers=rejected,
        )

    @handle_errors(ERROR_DOMAIN)
    async def Lookup(
        self, request: identity_pb2.LookupRequest, context: Context
    ) -> identity_pb2.LookupResponse:
        violations = Violations()
        batch = self._reader.read_batch(request.identifiers, violations)
        violations.raise_if_any()

        match = await self._graph.lookup(batch.identifiers)
        if match is None:
            return identity_pb2.LookupResponse(found=False)
        return identity_pb2.LookupResponse(
            found=True,
            profile_id=match.profile_id,
            matched_index=batch.indices[match.index],
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
            raise _profile_not_found(request.profile_id)
        return identity_pb2.GetProfileResponse(
            profile=convert.profile_to_proto(profile)
        )

    @handle_errors(ERROR_DOMAIN)
    async def SplitProfile(
        self, request: identity_pb2.SplitProfileRequest, context: Context
    ) -> identity_pb2.SplitProfileResponse:
        violations = Violations()
        _use_request_id(request.request_id, violations)
        check_profile_id(request.profile_id, violations)
        identifiers, paths = self._read_split_selection(request, violations)
        violations.raise_if_any()

        try:
            result = await self._graph.split_profile(
                request.profile_id, identifiers, request.merged_profile_id
            )
        except IdentifierNotLinked as error:
            raise FailedPrecondition(
                f"{paths[error.position]} is not linked to profile {request.profile_id}",
                metadata=error.metadata,
            ) from None
        return identity_pb2.SplitProfileResponse(
            profile_id=result.profile_id,
            new_profile_id=result.new_profile_id,
            moved_identifiers=[convert.link_to_proto(link) for link in result.moved],
            moved_merged_profile_ids=result.moved_merged_profile_ids,
        )

    def _read_split_selection(
        self, request: identity_pb2.SplitProfileRequest, violations: Violations
    ) -> tuple[list[HashedIdentifier], list[str]]:
        """Read what a split moves. Return the identifiers and the field path of each."""
        named = len(request.identifiers) + len(request.identifier_hashes)
        if request.merged_profile_id:
            check_profile_id(request.merged_profile_id, violations, "merged_profile_id")
            if named:
                violations.add(
                    "merged_profile_id",
                    "must be empty when identifiers or identifier_hashes are set",
                )
            return [], []
        if not 1 <= named <= MAX_SPLIT_IDENTIFIERS:
            violations.add(
                "identifiers",
                f"identifiers and identifier_hashes together must name 1 to "
                f"{MAX_SPLIT_IDENTIFIERS} identifiers, not {named}, unless "
                "merged_profile_id is set",
            )
            return [], []

        identifiers: list[HashedIdentifier] = []
        paths: list[str] = []
        for index, item in enumerate(request.identifiers):
            path = f"identifiers[{index}]"
            outcome = self._reader.read_one(
                item, path, violations, apply_blocklist=False
            )
            if isinstance(outcome, HashedIdentifier):
                identifiers.append(outcome)
                paths.append(path)
        for index, hashed in enumerate(request.identifier_hashes):
            path = f"identifier_hashes[{index}]"
            found = read_identifier_hash(hashed, path, violations)
            if found is not None:
                identifiers.append(found)
                paths.append(path)

        # The graph reports a position among distinct identifiers, so duplicates are dropped.
        selected: dict[str, tuple[HashedIdentifier, str]] = {}
        for identifier, path in zip(identifiers, paths, strict=True):
            selected.setdefault(identifier.field, (identifier, path))
        return [item for item, _ in selected.values()], [
            path for _, path in selected.values()
        ]

    @handle_errors(ERROR_DOMAIN)
    async def ExplainLink(
        self, request: identity_pb2.ExplainLinkRequest, context: Context
    ) -> identity_pb2.ExplainLinkResponse:
        violations = Violations()
        first = self._reader.read_one(request.first, "first", violations)
        second = self._reader.read_one(request.second, "second", violations)
        violations.raise_if_any()

        if isinstance(first, HashedIdentifier) and isinstance(second, HashedIdentifier):
            explanation = await self._graph.explain_link(first, second)
        else:
            explanation = Explanation(
                first=await self._status_of(first),
                second=await self._status_of(second),
                merges=[],
            )
        shared_profile = explanation.first.profile_id if explanation.linked else None
        return identity_pb2.ExplainLinkResponse(
            linked=explanation.linked,
            profile_id=shared_profile or "",
            first=convert.status_to_proto(explanation.first),
            second=convert.status_to_proto(explanation.second),
            merges=[convert.merge_step(record) for record in explanation.merges],
        )

    async def _status_of(
        self, item: HashedIdentifier | Blocked | None
    ) -> IdentifierStatus:
        """Return the state of one identifier. A placeholder is BLOCKED."""
        if not isinstance(item, HashedIdentifier):
            return IdentifierStatus(IdentifierState.BLOCKED)
        explanation = await self._graph.explain_link(item, item)
        return explanation.first

    @handle_errors(ERROR_DOMAIN)
    async def ExportProfile(
        self, request: identity_pb2.ExportProfileRequest, context: Context
    ) -> identity_pb2.ExportProfileResponse:
        violations = Violations()
        check_profile_id(request.profile_id, violations)
        violations.raise_if_any()

        export = await self._subject_rights.export_profile(request.profile_id)
        if export is None:
            raise _profile_not_found(request.profile_id)
        return identity_pb2.ExportProfileResponse(
            profile=convert.profile_to_proto(export.profile),
            merged_profiles=[
                convert.merged_profile(item) for item in export.merged_profiles
            ],
            split_from_profile_id=export.split_from_profile_id or "",
            split_time=(
                convert.timestamp(export.split_time) if export.split_time else None
            ),
        )

    @handle_errors(ERROR_DOMAIN)
    async def EraseProfile(
        self, request: identity_pb2.EraseProfileRequest, context: Context
    ) -> identity_pb2.EraseProfileResponse:
        violations = Violations()
        _use_request_id(request.request_id, violations)
        check_profile_id(request.profile_id, violations)
        violations.raise_if_any()

        result = await self._subject_rights.erase_profile(request.profile_id)
        if result is None:
            raise _profile_not_found(request.profile_id)
        return identity_pb2.EraseProfileResponse(
            profile_id=result.profile_id,
            merged_profile_ids=result.merged_profile_ids,
            erased_identifier_count=result.erased_identifier_count,
        )

    @handle_errors(ERROR_DOMAIN)
    async def ListQuarantinedValues(
        self, request: identity_pb2.ListQuarantinedValuesRequest, context: Context
    ) -> identity_pb2.ListQuarantinedValuesResponse:
        violations = Violations()
        size, offset = check_page(request.page_size, request.page_token, violations)
        violations.raise_if_any()

        values, next_offset = await self._quarantine.list_values(offset, size)
        return identity_pb2.ListQuarantinedValuesResponse(
            values=[convert.quarantined_to_proto(value) for value in values],
            next_page_token="" if next_offset is None else str(next_offset),
        )

    @handle_errors(ERROR_DOMAIN)
    async def ReleaseQuarantinedValue(
        self, request: identity_pb2.ReleaseQuarantinedValueRequest, context: Context
    ) -> identity_pb2.ReleaseQuarantinedValueResponse:
        violations = Violations()
        identifier = read_identifier_hash(request.identifier, "identifier", violations)
        violations.raise_if_any()
        assert identifier is not None

        if not await self._quarantine.release(identifier):
            raise NotFound(f"the {identifier.kind} value is not quarantined")
        return identity_pb2.ReleaseQuarantinedValueResponse()


def _use_request_id(request_id: str, violations: Violations) -> None:
    """Check the optional request id and, when it is valid, use it in the call's logs."""
    before = len(violations.items)
    check_request_id(request_id, violations)
    if request_id and len(violations.items) == before:
        request_id_var.set(request_id)


def _profile_not_found(profile_id: str) -> NotFound:
    return NotFound(
        f"profile {profile_id} not found", metadata={"profile_id": profile_id}
    )


__all__ = ["ERROR_DOMAIN", "MAX_IDENTIFIERS", "SERVICE_NAME", "IdentityServicer"]
