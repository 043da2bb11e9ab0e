"""Redis key layout of the identity graph.

Every key of the graph carries the same hash tag, ``{tf:identity:events}``: the name of the
event stream. On Redis Cluster a key with a tag is placed by the tag alone, and the stream key
(which has no tag) is placed by its whole name, so the graph and the stream share one slot.
That is what lets one Lua script move identifiers between any profiles and publish the
merge event atomically. The cost is that the whole graph lives on one cluster master.

Keys, each after the prefix ``tf:identity:{tf:identity:events}:``:

- ``ix:<kind>:<hash>`` (string): the id of the identifier's live profile.
- ``p:<profile id>`` (hash): ``created`` (ms since the epoch) and ``state`` (``live`` or
  ``merged``); a merged profile also has ``into`` (its survivor) and ``merged_at`` (ms).
- ``p:<profile id>:links`` (hash): ``<kind>:<hash>`` to the link's provenance,
  ``<ms>:<origin profile id>:<source>``. Only live profiles have one.
- ``p:<profile id>:merged`` (set): ids of every profile merged into this one, directly or
  through profiles merged earlier.
"""

from services.identity.models import HashedIdentifier

EVENTS_STREAM = "tf:identity:events"
"""Redis Stream of identity events, read by consent and decision with consumer groups."""

GRAPH_PREFIX = "tf:identity:{" + EVENTS_STREAM + "}:"
"""Prefix of every graph key. Its hash tag puts the graph in the event stream's slot."""


def index_key(identifier: HashedIdentifier) -> str:
    """Return the key that maps an identifier to its profile id."""
    return f"{GRAPH_PREFIX}ix:{identifier.field}"


def profile_key(profile_id: str) -> str:
    """Return the key of a profile's record (creation time, state, merge target)."""
    return f"{GRAPH_PREFIX}p:{profile_id}"
