"""Domain types of the identity service: identifier kinds, links, profiles and outcomes."""

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

PROFILE_ID_PATTERN = re.compile(r"^p_[0-9a-f]{32}$")
"""A profile id: ``p_`` then 32 lower-case hex digits (128 random bits)."""

VALUE_HASH_PATTERN = re.compile(r"^[0-9a-f]{64}$")
"""A stored identifier value: 64 lower-case hex digits of HMAC-SHA256."""


class Kind(StrEnum):
    """The kind of an identifier. Its value is the name used in hashes and Redis keys."""

    EMAIL = "email"
    PHONE = "phone"
    ACCOUNT_ID = "account_id"
    LOYALTY_ID = "loyalty_id"
    DEVICE_ID = "device_id"
    COOKIE_ID = "cookie_id"
    POS_TOKEN = "pos_token"


@dataclass(frozen=True)
class HashedIdentifier:
    """An identifier as the graph stores it: its kind and the keyed hash of its value."""

    kind: Kind
    value_hash: str

    @property
    def field(self) -> str:
        """The name of this identifier in the graph's keys: ``<kind>:<hash>``."""
        return f"{self.kind}:{self.value_hash}"

    @classmethod
    def from_field(cls, text: str) -> "HashedIdentifier":
        """Parse a ``<kind>:<hash>`` field name back into an identifier."""
        kind, value_hash = text.split(":", 1)
        return cls(Kind(kind), value_hash)


class Rejection(StrEnum):
    """Reason that Resolve rejected an identifier. The values are the codes the Lua script returns."""

    BLOCKED_VALUE = "blocked"
    UNIQUE_KIND_CONFLICT = "unique"
    KIND_LIMIT_EXCEEDED = "limit"
    QUARANTINED = "quarantined"
    ERASED = "erased"


class IdentifierState(StrEnum):
    """State of an identifier in the graph."""

    LINKED = "linked"
    UNKNOWN = "unknown"
    QUARANTINED = "quarantined"
    ERASED = "erased"
    BLOCKED = "blocked"


@dataclass(frozen=True)
class Link:
    """One identifier linked to a profile, with its provenance."""

    identifier: HashedIdentifier
    source: str
    link_time: datetime
    origin_profile_id: str
    """The profile the identifier was first linked to. After a merge it differs from the live profile."""
    anchor: HashedIdentifier | None = None
    """An identifier of the same Resolve that was already on the origin profile. It is None
    when that Resolve created the origin profile, or when a split moved the link."""


@dataclass(frozen=True)
class Profile:
    """A live profile with its links and the ids of every profile merged into it."""

    profile_id: str
    create_time: datetime
    links: list[Link]
    merged_profile_ids: list[str]


@dataclass(frozen=True)
class RejectedIdentifier:
    """An identifier of a Resolve request that was not linked."""

    index: int
    """Index into the request's identifiers."""
    reason: Rejection
    rule_kind: Kind | None = None
    """The kind whose uniqueness or limit rejected the link."""
    quarantined: bool = False
    """True when this Resolve put the value in quarantine."""


@dataclass(frozen=True)
class ResolveResult:
    """The outcome of one Resolve: the surviving profile and what the call changed."""

    profile_id: str
    """The profile now holding the linked identifiers, or empty when nothing was linked."""
    created: bool
    merged_profile_ids: list[str]
    rejected: list[RejectedIdentifier] = field(default_factory=list)


@dataclass(frozen=True)
class LookupMatch:
    """The profile of the first known identifier and that identifier's index in the request."""

    profile_id: str
    index: int


@dataclass(frozen=True)
class SplitResult:
    """The outcome of SplitProfile: where the identifiers went."""

    profile_id: str
    new_profile_id: str
    moved: list[Link]
    moved_merged_profile_ids: list[str]


@dataclass(frozen=True)
class MergeRecord:
    """A profile merged into another, with the provenance of that merge."""

    profile_id: str
    create_time: datetime
    into_profile_id: str
    """The profile it was merged into at the time, which may have been merged since."""
    merge_time: datetime
    source: str
    merged_identifier: HashedIdentifier | None
    """The identifier of the merging Resolve that was on this profile."""
    into_identifier: HashedIdentifier | None
    """The identifier of the merging Resolve that was on ``into_profile_id``."""


@dataclass(frozen=True)
class ProfileExport:
    """Everything the identity graph stores about one live profile."""

    profile: Profile
    merged_profiles: list[MergeRecord]
    split_from_profile_id: str | None
    split_time: datetime | None


@dataclass(frozen=True)
class EraseResult:
    """Outcome of EraseProfile: the profiles it deleted and how many identifiers."""

    profile_id: str
    merged_profile_ids: list[str]
    erased_identifier_count: int


@dataclass(frozen=True)
class IdentifierStatus:
    """An identifier's state, and its profile and link when it is linked."""

    state: IdentifierState
    profile_id: str | None = None
    link: Link | None = None


@dataclass(frozen=True)
class Explanation:
    """Explanation of whether two identifiers are on one profile, and which merges joined them."""

    first: IdentifierStatus
    second: IdentifierStatus
    merges: list[MergeRecord]
    """The merges from each identifier's origin profile up to where the two paths meet."""

    @property
    def linked(self) -> bool:
        """True when both identifiers are on the same live profile."""
        return (
            self.first.state is IdentifierState.LINKED
            and self.first.profile_id == self.second.profile_id
        )


@dataclass(frozen=True)
class QuarantinedValue:
    """An identifier value in quarantine."""

    identifier: HashedIdentifier
    quarantine_time: datetime
    profile_count: int
    """Distinct profiles that claimed the value when it was quarantined."""
