"""What identity's merges, splits and erasures do to consent.

Merge (profile L merged into survivor S): L's ledger gets a closing ``merged_into``
entry, after which writes to L are rejected. S then gets a ``merge`` entry (source
``identity-merge``) that sets each pair to the more restrictive of S's and L's values,
so the chain stays the single source of truth. The order of restriction, from most to
least, is withdrawn, then denied or a grant already expired, then never asked, then a
live grant. Between live grants, the one that expires first is the more restrictive. On a tie S keeps its own
value. The survivor also takes the jurisdiction that allows fewer never-asked pairs.
The result holds until the customer decides again, because a later RecordConsent on S
simply overwrites a pair.

Split (profile N split off P): N gets a ``split`` entry with P's refusals (withdrawn,
denied, expired grants) and P's jurisdiction, but none of P's grants, because a grant
on P may have come from either person. P keeps its ledger.

Erase (profile P and every id merged into it): each subject is erased (see erasure.py).

Every step is idempotent: the merge and split entries carry the idempotency keys
``identity-merge:<L>`` and ``identity-split:<P>``, the closing entry is written only
once, and erasing twice changes nothing. A redelivered event therefore has the effect
of one delivery.
"""

import logging
from dataclasses import dataclass

from services.consent.erasure import SubjectEraser
from services.consent.errors import SubjectErased, SubjectMerged
from services.consent.jurisdictions import JurisdictionPolicy
from services.consent.ledger import (
    MERGE_ENTRY_TYPE,
    MERGED_INTO_ENTRY_TYPE,
    SPLIT_ENTRY_TYPE,
    SubjectLink,
)
from services.consent.models import Change
from services.consent.reader import ConsentReader
from services.consent.state import (
    HEAD_FIELD,
    JURISDICTION_FIELD,
    SEQUENCE_FIELD,
    change_for_value,
    restriction_rank,
)
from services.consent.vocabulary import PAIRS_BY_FIELD
from services.consent.writer import Draft, LedgerWriter, Snapshot

logger = logging.getLogger(__name__)

MERGE_SOURCE = "identity-merge"
SPLIT_SOURCE = "identity-split"
ERASE_REASON = "identity-erase"

MAX_SURVIVOR_HOPS = 8
"""Survivors followed when the survivor itself was merged away before the event ran."""

_DENIED_RANK = 2
"""restriction_rank of a denial; a split copies values ranked here or above."""


class ReconcileError(Exception):
    """An identity event that cannot be applied, however often it is retried."""


@dataclass(frozen=True, slots=True)
class IdentityEvent:
    """One entry of identity's event stream.

    ``merged_ids`` are the profiles merged into ``profile_id`` (merge) or every id
    that had been merged into the erased profile (erase). ``new_profile_id`` is set
    for a split.
    """

    event_id: str
    type: str
    profile_id: str
    merged_ids: tuple[str, ...] = ()
    new_profile_id: str | None = None


class IdentityReconciler:
    """Applies identity events to consent ledgers."""

    def __init__(
        self,
        writer: LedgerWriter,
        reader: ConsentReader,
        eraser: SubjectEraser,
        policy: JurisdictionPolicy,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._eraser = eraser
        self._policy = policy

    async def apply(self, event: IdentityEvent) -> None:
        """Apply one event; an event of an unknown type is logged and skipped."""
        if event.type == "merge":
            for merged_id in dict.fromkeys(event.merged_ids):
                await self.merge(event.profile_id, merged_id, event.event_id)
        elif event.type == "split":
            if event.new_profile_id is None:
                raise ReconcileError("a split event needs new_profile_id")
            await self.split(event.profile_id, event.new_profile_id, event.event_id)
        elif event.type == "erase":
            for subject_id in dict.fromkeys((event.profile_id, *event.merged_ids)):
                await self._eraser.erase(subject_id, ERASE_REASON)
        else:
            logger.warning(
                "identity event of unknown type skipped",
                extra={"event_id": event.event_id, "event_type": event.type},
            )

    async def merge(self, survivor_id: str, merged_id: str, event_id: str) -> None:
        """Close merged_id's ledger and fold its state into the survivor's."""
        if merged_id == survivor_id:
            logger.warning(
                "merge event names the survivor as merged; skipped",
                extra={"event_id": event_id, "subject_id": survivor_id},
            )
            return
        if not await self._close(merged_id, survivor_id, event_id):
            return
        merged_state = await self._reader.read_state(merged_id)

        target = survivor_id
        for _ in range(MAX_SURVIVOR_HOPS):
            try:
                await self._fold(target, merged_id, merged_state, event_id)
                return
            except SubjectMerged as moved:
                logger.info(
                    "merge survivor was merged away; following it",
                    extra={"subject_id": target, "merged_into": moved.merged_into},
                )
                target = moved.merged_into
            except SubjectErased:
                logger.info(
                    "merge survivor was erased; merge skipped",
                    extra={"event_id": event_id, "subject_id": target},
                )
                return
        raise ReconcileError(
            f"survivor {survivor_id} leads through more than {MAX_SURVIVOR_HOPS} merges"
        )

    async def split(self, origin_id: str, new_id: str, event_id: str) -> None:
        """Give new_id the refusals and jurisdiction of origin_id."""
        if new_id == origin_id:
            raise ReconcileError("a split event names the same profile twice")
        origin = await self._reader.read_state(origin_id)

        def build(snapshot: Snapshot) -> Draft:
            changes = _restrictive_changes(
                snapshot.fields, origin, self._writer.clock(), _DENIED_RANK
            )
            jurisdiction = self._policy.more_restrictive(
                snapshot.jurisdiction, origin.get(JURISDICTION_FIELD)
            )
            return Draft(
                source=SPLIT_SOURCE,
                type=SPLIT_ENTRY_TYPE,
                changes=changes,
                jurisdiction=None
                if jurisdiction == snapshot.jurisdiction
                else jurisdiction,
                link=_link(origin_id, origin),
                event_id=event_id,
            )

        try:
            await self._writer.append(
                new_id,
                build,
                idempotency_key=f"identity-split:{origin_id}",
                full_state=True,
                accept_merged=True,
            )
        except SubjectErased:
            logger.info(
                "split target was erased; split skipped",
                extra={"event_id": event_id, "subject_id": new_id},
            )

    async def _close(self, merged_id: str, survivor_id: str, event_id: str) -> bool:
        """Write the merged_into entry once; return False if merged_id was erased."""

        def build(snapshot: Snapshot) -> Draft | None:
            if snapshot.merged_into is not None:
                return None
            return Draft(
                source=MERGE_SOURCE,
                type=MERGED_INTO_ENTRY_TYPE,
                link=SubjectLink(survivor_id),
                event_id=event_id,
            )

        try:
            await self._writer.append(merged_id, build, accept_merged=True)
        except SubjectErased:
            logger.info(
                "merged profile was erased; merge skipped",
                extra={"event_id": event_id, "subject_id": merged_id},
            )
            return False
        return True

    async def _fold(
        self,
        survivor_id: str,
        merged_id: str,
        merged_state: dict[str, str],
        event_id: str,
    ) -> None:
        def build(snapshot: Snapshot) -> Draft:
            changes = _restrictive_changes(
                snapshot.fields, merged_state, self._writer.clock(), 0
            )
            jurisdiction = self._policy.more_restrictive(
                snapshot.jurisdiction, merged_state.get(JURISDICTION_FIELD)
            )
            return Draft(
                source=MERGE_SOURCE,
                type=MERGE_ENTRY_TYPE,
                changes=changes,
                jurisdiction=None
                if jurisdiction == snapshot.jurisdiction
                else jurisdiction,
                link=_link(merged_id, merged_state),
                event_id=event_id,
            )

        appended = await self._writer.append(
            survivor_id,
            build,
            idempotency_key=f"identity-merge:{merged_id}",
            full_state=True,
        )
        if appended is not None and not appended.replayed:
            logger.info(
                "merged consent folded into survivor",
                extra={
                    "event_id": event_id,
                    "subject_id": survivor_id,
                    "merged_subject_id": merged_id,
                    "ledger_sequence": appended.entry.sequence,
                    "changes": len(appended.entry.changes),
                },
            )


def _restrictive_changes(
    mine: dict[str, str], theirs: dict[str, str], now_ns: int, min_rank: int
) -> tuple[Change, ...]:
    """Return the changes that give each pair the more restrictive of two values.

    Only values of theirs ranked min_rank or above are considered; on a tie mine wins.
    """
    changes = []
    for field, pair in PAIRS_BY_FIELD.items():
        their_value = theirs.get(field)
        their_rank = restriction_rank(their_value, now_ns)
        if their_rank[0] < min_rank:
            continue
        if their_rank > restriction_rank(mine.get(field), now_ns):
            changes.append(change_for_value(pair, their_value))
    return tuple(changes)


def _link(subject_id: str, state: dict[str, str]) -> SubjectLink:
    return SubjectLink(
        subject_id,
        int(state.get(SEQUENCE_FIELD) or 0),
        state.get(HEAD_FIELD),
    )
