"""Domain types of the identity service: identifier kinds, links and profiles."""

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

PROFILE_ID_PATTERN = re.compile(r"^p_[0-9a-f]{32}$")
"""A profile id: ``p_`` then 32 lower-case hex digits (128 random bits)."""


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


@dataclass(frozen=True)
class Link:
    """One identifier linked to a profile, with its provenance."""

    identifier: HashedIdentifier
    source: str
    link_time: datetime
    origin_profile_id: str
    """The profile the identifier was first linked to. After a merge it differs from the live profile."""


@dataclass(frozen=True)
class Profile:
    """A live profile with its links and the ids of every profile merged into it."""

    profile_id: str
    create_time: datetime
    links: list[Link]
    merged_profile_ids: list[str]


@dataclass(frozen=True)
class ResolveResult:
    """The outcome of one Resolve: the surviving profile and what the call changed."""

    profile_id: str
    created: bool
    merged_profile_ids: list[str]


@dataclass(frozen=True)
class LookupMatch:
    """The profile of the first known identifier and that identifier's index in the request."""

    profile_id: str
    index: int
