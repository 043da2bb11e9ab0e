"""gRPC servicer of trustfirst.consent.v1.ConsentService: validation and conversion only."""

from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from services.consent.errors import ERROR_DOMAIN
from services.consent.models import PairState
from services.consent.reader import ConsentReader
from services.consent.recorder import ConsentRecorder
from services.consent.tokens import encode_token
from services.consent.validation import validate_check, validate_list, validate_record
from shared.errors import handle_errors
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class ConsentServicer(consent_pb2_grpc.ConsentServiceServicer):
    """Validates each request, calls the recorder or reader, and builds the response."""

    def __init__(self, recorder: ConsentRecorder, reader: ConsentReader) -> None:
        self._recorder = recorder
        self._reader = reader

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
        )

    @handle_errors(ERROR_DOMAIN)
    async def CheckConsent(
        self, request: pb.CheckConsentRequest, context: Context
    ) -> pb.CheckConsentResponse:
        subject_id, pairs, min_sequence = validate_check(request)
        answer = await self._reader.check(subject_id, pairs, min_sequence)

        response = pb.CheckConsentResponse(
            consistency_token=encode_token(subject_id, answer.sequence)
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
        subject_id = validate_list(request)
        listing = await self._reader.list_consents(subject_id)
        return pb.ListConsentsResponse(
            consents=[_to_record(state) for state in listing.states],
            consistency_token=encode_token(subject_id, listing.sequence),
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


def _timestamp(time_ns: int) -> Timestamp:
    timestamp = Timestamp()
    timestamp.FromNanoseconds(time_ns)
    return timestamp
