"""Redis keys of the consent service.

Every key of one subject carries the subject id as its hash tag
(``tf:consent:{<subject_id>}:...``), so the multi-key write of RecordConsent stays in
one Redis Cluster slot. The erasure record of a subject is named by a keyed hash of
the subject id instead, so it contains no identifier (``tf:consent:erased:{<hash>}``).
"""

from dataclasses import dataclass

KEY_PREFIX = "tf:consent:"


def state_key(subject_id: str) -> str:
    """Return the key of the subject's state hash (one field per pair, plus position)."""
    return f"{KEY_PREFIX}{{{subject_id}}}:state"


def ledger_key(subject_id: str) -> str:
    """Return the key of the subject's ledger list (one JSON entry per element)."""
    return f"{KEY_PREFIX}{{{subject_id}}}:ledger"


def erasure_key(subject_hash: str) -> str:
    """Return the key of the erasure record of the subject with this keyed hash."""
    return f"{KEY_PREFIX}erased:{{{subject_hash}}}"


def idempotency_key(subject_id: str) -> str:
    """Return the key of the hash from idempotency key to the ledger sequence it wrote."""
    return f"{KEY_PREFIX}{{{subject_id}}}:idempotency"


@dataclass(frozen=True, slots=True)
class SubjectKeys:
    """The three keys of one subject."""

    state: str
    ledger: str
    idempotency: str

    @classmethod
    def of(cls, subject_id: str) -> "SubjectKeys":
        return cls(
            state_key(subject_id), ledger_key(subject_id), idempotency_key(subject_id)
        )
