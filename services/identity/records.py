"""Conversions between the graph's Redis values and domain types, and time helpers."""

import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from services.identity.models import HashedIdentifier, Link, MergeRecord

Clock = Callable[[], datetime]

NO_ANCHOR = "-:-"
"""The anchor part of a link's provenance when the link has no anchor."""


def new_profile_id() -> str:
    """Return a fresh profile id: ``p_`` and 128 random bits in lower-case hex."""
    return "p_" + secrets.token_hex(16)


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_millis(millis: int | str) -> datetime:
    return datetime.fromtimestamp(int(millis) / 1000, UTC)


def to_iso(moment: datetime) -> str:
    """Return moment as ISO 8601 UTC with milliseconds, like ``2025-01-31T09:30:00.123Z``."""
    return (
        moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def optional_identifier(text: str) -> HashedIdentifier | None:
    """Parse a ``<kind>:<hash>`` field, or return None for an empty or ``-:-`` one."""
    if not text or text == NO_ANCHOR:
        return None
    return HashedIdentifier.from_field(text)


def parse_link(field: Any, provenance: Any) -> Link:
    """Parse a links-hash entry: the field ``<kind>:<hash>`` and its provenance,
    ``<ms>:<origin profile>:<anchor kind>:<anchor hash>:<source>``."""
    millis, origin, anchor_kind, anchor_hash, source = str(provenance).split(":", 4)
    return Link(
        identifier=HashedIdentifier.from_field(str(field)),
        source=source,
        link_time=from_millis(millis),
        origin_profile_id=origin,
        anchor=optional_identifier(f"{anchor_kind}:{anchor_hash}"),
    )


def parse_links(flat: Sequence[Any]) -> list[Link]:
    """Parse a flat HGETALL reply of a links hash, ordered by link time, then field."""
    links = [parse_link(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    links.sort(key=lambda link: (link.link_time, link.identifier.field))
    return links


def parse_merge_records(flat: Sequence[Any]) -> list[MergeRecord]:
    """Parse groups of seven values: id, created, parent, merged_at, merge_source,
    merge_via and merge_with, as the export and explain scripts return them."""
    records = []
    for i in range(0, len(flat), 7):
        profile_id, created, parent, merged_at, source, via, with_ = (
            str(item) for item in flat[i : i + 7]
        )
        records.append(
            MergeRecord(
                profile_id=profile_id,
                create_time=from_millis(created or 0),
                into_profile_id=parent,
                merge_time=from_millis(merged_at or 0),
                source=source,
                merged_identifier=optional_identifier(via),
                into_identifier=optional_identifier(with_),
            )
        )
    return records


def pairs_to_dict(flat: Sequence[Any]) -> dict[str, str]:
    """Turn a flat HGETALL reply into a dict of strings."""
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}
