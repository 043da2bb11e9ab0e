"""gRPC servicer of trustfirst.consent.v1.ConsentService: validation and conversion only."""

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.consent.errors import ERROR_DOMAIN
from services.consent.history import HistoryItem, HistoryReader
from services.consent.jurisdictions import JurisdictionPolicy
from services.consent.ledger import (
    JURISDICTION_ENTRY_TYPE,
    MERGE_ENTRY_TYPE,
    MERGED_INTO_ENTRY_TYPE,
    RECORD_ENTRY_TYPE,
    SPLIT_ENTRY_TYPE,
)
from services.consent.models import ErasureRecord, PairState
from services.consent.reader import ConsentReader
from services.consent.recorder import ConsentRecorder
from services.consent.state import STATUS_BY_ACTION
from services.consent.tokens import encode_token
from services.consent.validation import (
    validate_check,
    validate_history,
    validate_list,
    validate_record,
    validate_set_jurisdiction,
    validate_verify,
)
from services.consent.verifier import LedgerVerifier
from shared.errors import handle_errors
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]

_ENTRY_TYPES = {
    RECORD_ENTRY_TYPE: pb.LEDGER_ENTRY_TYPE_RECORD,
    JURISDICTION_ENTRY_TYPE: pb.LEDGER_ENTRY_TYPE_JURISDICTION,
    MERGE_ENTRY_TYPE: pb.LEDGER_ENTRY_TYPE_MERGE,
    MERGED_INTO_ENTRY_TYPE: pb.LEDGER_ENTRY_TYPE_MERGED_INTO,
    SPLIT_ENTRY_TYPE: pb.LEDGER_ENTRY_TYPE_SPLIT,
}


class ConsentServicer(consent_pb2_grpc.ConsentServiceServicer):
    """Validates each request, calls the domain object, and builds the response."""

    def __init__(
        self,
        recorder: ConsentRecorder,
        reader: ConsentReader,
        history: HistoryReader,
        verifier: LedgerVerifier,
        policy: JurisdictionPolicy,
    ) -> None:
        self._recorder = recorder
        self._reader = reader
        self._history = history
        self._verifier = verifier
        self._policy = policy

    @handle_errors(ERROR_DOMAIN)
    async def RecordConsent(
        self, request: pb.RecordConsentRequest, context: Context
    ) -> pb.RecordConsentResponse:
        record = validate_record(request)
        result = await self._recorder.record(record)
        return pb.RecordConsentResponse(
            consistency_token=encode_token(record.subject_id, result.sequence),
            records=[_to_record(state) for state in result.states],
            replayed=result.replayed,
            entry_hash=result.entry_hash,
        )

    @handle_errors(ERROR_DOMAIN)
    async def CheckConsent(
        self, request: pb.CheckConsentRequest, context: Context
    ) -> pb.CheckConsentResponse:
        subject_id, pairs, min_sequence = validate_check(request)
        answer = await self._reader.check(subject_id, pairs, min_sequence)

        response = pb.CheckConsentResponse(
            consistency_token=encode_token(subject_id, answer.sequence),
            jurisdiction=answer.jurisdiction,
            merged_into_subject_id=answer.merged_into or "",
        )
        results = response.results
        for pair, verdict in zip(pairs, answer.verdicts, strict=True):
            results.add(
                purpose=pair.purpose,
                channel=pair.channel,
                allowed=verdict.allowed,
                status=verdict.status,
                reason=verdict.reason,
            )
        return response

    @handle_errors(ERROR_DOMAIN)
    async def ListConsents(
        self, request: pb.ListConsentsRequest, context: Context
    ) -> pb.ListConsentsResponse:
        subject_id, at_sequence = validate_list(request)
        if at_sequence is None:
            listing = await self._reader.list_consents(subject_id)
        else:
            listing = await self._reader.list_at(subject_id, at_sequence)
        return pb.ListConsentsResponse(
            consents=[_to_record(state) for state in listing.states],
            consistency_token=encode_token(subject_id, listing.sequence),
            jurisdiction=listing.jurisdiction,
            merged_into_subject_id=listing.merged_into or "",
        )

    @handle_errors(ERROR_DOMAIN)
    async def ListConsentHistory(
        self, request: pb.ListConsentHistoryRequest, context: Context
    ) -> pb.ListConsentHistoryResponse:
        subject_id, start, size = validate_history(request)
        page = await self._history.page(subject_id, start, size)
        response = pb.ListConsentHistoryResponse(
            entries=[_to_entry(item) for item in page.items],
            consistency_token=encode_token(subject_id, page.sequence),
        )
        if page.next_sequence is not None:
            response.next_page_token = encode_token(subject_id, page.next_sequence)
        return response

    @handle_errors(ERROR_DOMAIN)
    async def VerifyLedger(
        self, request: pb.VerifyLedgerRequest, context: Context
    ) -> pb.VerifyLedgerResponse:
        subject_id, checkpoints = validate_verify(request)
        report = await self._verifier.verify(subject_id, checkpoints)
        response = pb.VerifyLedgerResponse(
            valid=report.valid,
            entry_count=report.entry_count,
            head_hash=report.head_hash,
            consistency_token=encode_token(subject_id, report.sequence),
            problems=[
                pb.LedgerProblem(
                    sequence=problem.sequence,
                    kind=problem.kind,
                    description=problem.description,
                )
                for problem in report.problems
            ],
        )
        if report.erasure is not None:
            response.erasure.CopyFrom(_to_erasure(report.erasure))
        return response

    @handle_errors(ERROR_DOMAIN)
    async def SetJurisdiction(
        self, request: pb.SetJurisdictionRequest, context: Context
    ) -> pb.SetJurisdictionResponse:
        jurisdiction = validate_set_jurisdiction(request, self._policy.codes)
        result = await self._recorder.set_jurisdiction(jurisdiction)
        return pb.SetJurisdictionResponse(
            consistency_token=encode_token(jurisdiction.subject_id, result.sequence),
            replayed=result.replayed,
            entry_hash=result.entry_hash,
        )


def _to_record(state: PairState) -> pb.ConsentRecord:
    record = pb.ConsentRecord(
        purpose=state.purpose,
        channel=state.channel,
        status=state.status,
        source=state.source,
        notice_version=state.notice_version,
        update_time=_timestamp(state.update_ns),
        ledger_sequence=state.ledger_sequence,
    )
    if state.expire_ns is not None:
        record.expire_time.CopyFrom(_timestamp(state.expire_ns))
    return record


def _to_entry(item: HistoryItem) -> pb.LedgerEntry:
    message = pb.LedgerEntry(
        sequence=item.sequence, hash=item.hash, canonical_json=item.text
    )
    entry = item.entry
    if entry is None:
        return message

    message.type = _ENTRY_TYPES[entry.type]
    message.time.CopyFrom(_timestamp(entry.time_ns))
    message.source = entry.source
    message.notice_version = entry.notice_version or ""
    message.idempotency_key = entry.idempotency_key or ""
    message.jurisdiction = entry.jurisdiction or ""
    message.identity_event_id = entry.event_id or ""
    message.prev_hash = entry.prev_hash
    if entry.link is not None:
        message.related_subject_id = entry.link.subject_id
        message.related_ledger_sequence = entry.link.sequence or 0
        message.related_ledger_head = entry.link.head or ""
    for change in entry.changes:
        added = message.changes.add(
            purpose=change.purpose,
            channel=change.channel,
            status=STATUS_BY_ACTION[change.action],
        )
        if change.expire_ns is not None:
            added.expire_time.CopyFrom(_timestamp(change.expire_ns))
    return message


def _to_erasure(record: ErasureRecord) -> pb.ErasureRecord:
    return pb.ErasureRecord(
        erase_time=_timestamp(record.erase_ns),
        ledger_sequence=record.sequence,
        ledger_head=record.head,
        entry_hashes=record.entry_hashes,
    )


def _timestamp(time_ns: int) -> Timestamp:
    timestamp = Timestamp()
    timestamp.FromNanoseconds(time_ns)
    return timestamp
