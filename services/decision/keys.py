"""Redis keys of the decision service.

Every per-profile key carries the profile id as a hash tag, so the multi-key steps of one
profile (the feature and contact read, the decision commit, the outcome attribution) stay
in one cluster slot.
"""


def features_key(profile_id: str) -> str:
    """Hash of the profile's purchase aggregate."""
    return f"tf:decision:{{{profile_id}}}:features"


def event_key(profile_id: str, event_id: str) -> str:
    """Marker of an applied outcome event id; it expires after the event id TTL."""
    return f"tf:decision:{{{profile_id}}}:event:{event_id}"


def decision_key(profile_id: str, decision_id: str) -> str:
    """JSON record of one decision."""
    return f"tf:decision:{{{profile_id}}}:decision:{decision_id}"


def decisions_key(profile_id: str) -> str:
    """Sorted set of the profile's decision ids, scored by decision time (seconds)."""
    return f"tf:decision:{{{profile_id}}}:decisions"


def contacts_key(profile_id: str) -> str:
    """Sorted set of ``<decision_id>:<channel number>`` members, scored by contact time."""
    return f"tf:decision:{{{profile_id}}}:contacts"


def outcomes_key(profile_id: str) -> str:
    """Sorted set of the profile's outcome entries (JSON), scored by event time."""
    return f"tf:decision:{{{profile_id}}}:outcomes"


DECISION_RECORD_PATTERN = "tf:decision:{*}:decision:*"
"""SCAN pattern of every decision record (Redis glob treats braces literally)."""


def profile_of_key(key: str) -> str:
    """Return the profile id inside a key's hash tag."""
    start = key.index("{") + 1
    return key[start : key.index("}", start)]
