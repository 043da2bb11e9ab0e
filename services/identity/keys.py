"""Redis key layout of the identity graph.

Every key of the graph carries the same hash tag, ``{tf:identity:events}``: the name of the
event stream. On Redis Cluster a key with a tag is placed by the tag alone, and the stream key
(which has no tag) is placed by its whole name, so the graph and the stream share one slot.
That is what lets one Lua script move identifiers between any profiles and publish the
event atomically. The cost is that the whole graph lives on one cluster master.

Keys, each after the prefix ``tf:identity:{tf:identity:events}:``:

- ``ix:<kind>:<hash>`` (string): the id of the identifier's live profile, or a marker:
  ``q:<ms>:<profiles>`` while the value is quarantined, ``x:<ms>`` once it was erased.
- ``p:<profile id>`` (hash): ``created`` (ms since the epoch) and ``state`` (``live`` or
  ``merged``). A merged profile also has ``into`` (its live survivor), ``parent`` (the
  profile it was merged into at the time), ``merged_at`` (ms), ``merge_source``,
  ``merge_via`` and ``merge_with`` (the identifiers of the merging Resolve on each side).
  A profile made by SplitProfile has ``split_from`` and ``split_at``.
- ``p:<profile id>:links`` (hash): ``<kind>:<hash>`` to the link's provenance,
  ``<ms>:<origin profile id>:<anchor kind>:<anchor hash>:<source>``, with ``-`` for a
  missing anchor. Only live profiles have one.
- ``p:<profile id>:merged`` (set): ids of every profile merged into this one, directly or
  through profiles merged earlier.
- ``cl:<kind>:<hash>`` (sorted set): profiles that claimed a value the rules kept apart,
  scored by the time of the claim in ms. It counts toward quarantine.
- ``quarantine`` (sorted set): the ``<kind>:<hash>`` of every quarantined value, scored
  by the time it was quarantined in ms.
"""

from services.identity.models import HashedIdentifier

EVENTS_STREAM = "tf:identity:events"
"""Redis Stream of identity events, read by consent and decision with consumer groups."""

GRAPH_PREFIX = "tf:identity:{" + EVENTS_STREAM + "}:"
"""Prefix of every graph key. Its hash tag puts the graph in the event stream's slot."""

QUARANTINE_KEY = GRAPH_PREFIX + "quarantine"
"""Sorted set of quarantined identifier fields, scored by quarantine time in ms."""

QUARANTINE_MARKER = "q:"
"""Start of an index value that marks a quarantined identifier."""

TOMBSTONE_MARKER = "x:"
"""Start of an index value that marks an erased identifier."""


def index_key(identifier: HashedIdentifier) -> str:
    """Return the key that maps an identifier to its profile id."""
    return f"{GRAPH_PREFIX}ix:{identifier.field}"


def profile_key(profile_id: str) -> str:
    """Return the key of a profile's record (creation time, state, merge target)."""
    return f"{GRAPH_PREFIX}p:{profile_id}"


def claims_key(identifier: HashedIdentifier) -> str:
    """Return the key of the profiles that claimed an identifier the rules kept apart."""
    return f"{GRAPH_PREFIX}cl:{identifier.field}"
