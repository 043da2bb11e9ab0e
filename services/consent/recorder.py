"""RecordConsent and SetJurisdiction: one ledger entry per request, applied once.

Both go through LedgerWriter, which appends the entry and updates the state in one
atomic step. A request with an idempotency key that was already applied gets the
original entry back, provided it requests the same change.
"""

import logging

from services.consent.ledger import JURISDICTION_ENTRY_TYPE, RECORD_ENTRY_TYPE
from services.consent.models import JurisdictionRequest, RecordRequest, RecordResult
from services.consent.state import states_from_entry
from services.consent.writer import Appended, Draft, LedgerWriter, Snapshot
from shared.errors import FieldViolation, InvalidArgument

logger = logging.getLogger(__name__)


class ConsentRecorder:
    """Writes a customer's consent changes and jurisdiction to the subject's ledger."""

    def __init__(self, writer: LedgerWriter) -> None:
        self._writer = writer

    async def record(self, request: RecordRequest) -> RecordResult:
        """Append request as one ledger entry, or replay it if its key was applied.

        Raises InvalidArgument for an expiry that is not in the future, or for a key
        reused with a different request.
        """

        def build(snapshot: Snapshot) -> Draft:
            self._check_expiry(request)
            return Draft(
                source=request.source,
                changes=request.changes,
                notice_version=request.notice_version,
            )

        appended = await self._writer.append(
            request.subject_id, build, request.idempotency_key
        )
        assert appended is not None, "build always returns a draft"

        entry = appended.entry
        if appended.replayed:
            same_request = (
                entry.type == RECORD_ENTRY_TYPE
                and entry.changes == request.changes
                and entry.source == request.source
                and entry.notice_version == request.notice_version
            )
            self._check_replay(appended, same_request, request.subject_id)
        else:
            logger.info(
                "consent recorded",
                extra={
                    "subject_id": request.subject_id,
                    "ledger_sequence": entry.sequence,
                    "changes": len(entry.changes),
                },
            )
        return RecordResult(
            entry.sequence, states_from_entry(entry), appended.replayed, appended.hash
        )

    async def set_jurisdiction(self, request: JurisdictionRequest) -> RecordResult:
        """Append a jurisdiction entry, or replay it if its key was applied."""

        def build(snapshot: Snapshot) -> Draft:
            return Draft(
                source=request.source,
                type=JURISDICTION_ENTRY_TYPE,
                jurisdiction=request.jurisdiction,
            )

        appended = await self._writer.append(
            request.subject_id, build, request.idempotency_key
        )
        assert appended is not None, "build always returns a draft"

        entry = appended.entry
        if appended.replayed:
            same_request = (
                entry.type == JURISDICTION_ENTRY_TYPE
                and entry.jurisdiction == request.jurisdiction
                and entry.source == request.source
            )
            self._check_replay(appended, same_request, request.subject_id)
        else:
            logger.info(
                "jurisdiction recorded",
                extra={
                    "subject_id": request.subject_id,
                    "ledger_sequence": entry.sequence,
                    "jurisdiction": request.jurisdiction,
                },
            )
        return RecordResult(entry.sequence, [], appended.replayed, appended.hash)

    def _check_expiry(self, request: RecordRequest) -> None:
        now = self._writer.clock()
        past = [
            FieldViolation(f"changes[{index}].expire_time", "must be in the future")
            for index, change in enumerate(request.changes)
            if change.expire_ns is not None and change.expire_ns <= now
        ]
        if past:
            raise InvalidArgument(past)

    @staticmethod
    def _check_replay(appended: Appended, same_request: bool, subject_id: str) -> None:
        sequence = appended.entry.sequence
        if not same_request:
            raise InvalidArgument(
                [
                    FieldViolation(
                        "idempotency_key",
                        f"was already used at ledger sequence {sequence} for a "
                        "different request; use a new key for a new request",
                    )
                ]
            )
        logger.info(
            "consent write replayed",
            extra={"subject_id": subject_id, "ledger_sequence": sequence},
        )
