"""Conversions from identity domain types to protobuf messages."""

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from services.identity.models import (
    HashedIdentifier,
    IdentifierState,
    IdentifierStatus,
    Link,
    MergeRecord,
    Profile,
    QuarantinedValue,
    RejectedIdentifier,
    Rejection,
)
from services.identity.validation import KIND_TO_PROTO
from trustfirst.identity.v1 import identity_pb2

REJECTION_TO_PROTO: dict[Rejection, identity_pb2.RejectionReason.ValueType] = {
    Rejection.BLOCKED_VALUE: identity_pb2.REJECTION_REASON_BLOCKED_VALUE,
    Rejection.UNIQUE_KIND_CONFLICT: identity_pb2.REJECTION_REASON_UNIQUE_KIND_CONFLICT,
    Rejection.KIND_LIMIT_EXCEEDED: identity_pb2.REJECTION_REASON_KIND_LIMIT_EXCEEDED,
    Rejection.QUARANTINED: identity_pb2.REJECTION_REASON_QUARANTINED,
    Rejection.ERASED: identity_pb2.REJECTION_REASON_ERASED,
}

STATE_TO_PROTO: dict[IdentifierState, identity_pb2.IdentifierState.ValueType] = {
    IdentifierState.LINKED: identity_pb2.IDENTIFIER_STATE_LINKED,
    IdentifierState.UNKNOWN: identity_pb2.IDENTIFIER_STATE_UNKNOWN,
    IdentifierState.QUARANTINED: identity_pb2.IDENTIFIER_STATE_QUARANTINED,
    IdentifierState.ERASED: identity_pb2.IDENTIFIER_STATE_ERASED,
    IdentifierState.BLOCKED: identity_pb2.IDENTIFIER_STATE_BLOCKED,
}


def timestamp(moment: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(moment)
    return result


def identifier_hash(
    identifier: HashedIdentifier | None,
) -> identity_pb2.IdentifierHash | None:
    if identifier is None:
        return None
    return identity_pb2.IdentifierHash(
        kind=KIND_TO_PROTO[identifier.kind], value_hash=identifier.value_hash
    )


def link_to_proto(link: Link) -> identity_pb2.LinkedIdentifier:
    return identity_pb2.LinkedIdentifier(
        kind=KIND_TO_PROTO[link.identifier.kind],
        value_hash=link.identifier.value_hash,
        source=link.source,
        link_time=timestamp(link.link_time),
        origin_profile_id=link.origin_profile_id,
        anchor=identifier_hash(link.anchor),
    )


def profile_to_proto(profile: Profile) -> identity_pb2.Profile:
    return identity_pb2.Profile(
        profile_id=profile.profile_id,
        create_time=timestamp(profile.create_time),
        identifiers=[link_to_proto(link) for link in profile.links],
        merged_profile_ids=profile.merged_profile_ids,
    )


def rejection_to_proto(
    item: RejectedIdentifier, request_index: int
) -> identity_pb2.RejectedIdentifier:
    return identity_pb2.RejectedIdentifier(
        index=request_index,
        reason=REJECTION_TO_PROTO[item.reason],
        rule_kind=(
            KIND_TO_PROTO[item.rule_kind]
            if item.rule_kind
            else identity_pb2.IDENTIFIER_KIND_UNSPECIFIED
        ),
        quarantined=item.quarantined,
        description=describe_rejection(item),
    )


def describe_rejection(item: RejectedIdentifier) -> str:
    """Return a sentence that names the rule that rejected an identifier."""
    if item.reason is Rejection.BLOCKED_VALUE:
        return "the value is a placeholder on the blocklist"
    if item.reason is Rejection.ERASED:
        return "the value belonged to an erased profile"
    if item.reason is Rejection.QUARANTINED:
        return "the value is quarantined because too many profiles claimed it"
    if item.reason is Rejection.UNIQUE_KIND_CONFLICT:
        text = (
            f"linking it would put two {item.rule_kind} values in one profile, "
            f"and {item.rule_kind} is a unique kind"
        )
    else:
        text = (
            f"linking it would put more {item.rule_kind} values in one profile "
            "than the maximum allows"
        )
    if item.quarantined:
        text += ". This call quarantined the value because too many profiles claimed it"
    return text


def merge_step(record: MergeRecord) -> identity_pb2.MergeStep:
    return identity_pb2.MergeStep(
        merged_profile_id=record.profile_id,
        into_profile_id=record.into_profile_id,
        merge_time=timestamp(record.merge_time),
        source=record.source,
        merged_identifier=identifier_hash(record.merged_identifier),
        into_identifier=identifier_hash(record.into_identifier),
    )


def merged_profile(record: MergeRecord) -> identity_pb2.MergedProfile:
    return identity_pb2.MergedProfile(
        profile_id=record.profile_id,
        create_time=timestamp(record.create_time),
        into_profile_id=record.into_profile_id,
        merge_time=timestamp(record.merge_time),
        source=record.source,
        merged_identifier=identifier_hash(record.merged_identifier),
        into_identifier=identifier_hash(record.into_identifier),
    )


def status_to_proto(status: IdentifierStatus) -> identity_pb2.IdentifierStatus:
    return identity_pb2.IdentifierStatus(
        state=STATE_TO_PROTO[status.state],
        profile_id=status.profile_id or "",
        link=link_to_proto(status.link) if status.link else None,
    )


def quarantined_to_proto(value: QuarantinedValue) -> identity_pb2.QuarantinedValue:
    return identity_pb2.QuarantinedValue(
        kind=KIND_TO_PROTO[value.identifier.kind],
        value_hash=value.identifier.value_hash,
        quarantine_time=timestamp(value.quarantine_time),
        profile_count=value.profile_count,
    )
