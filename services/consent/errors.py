"""Errors of the consent service, with their gRPC codes and ErrorInfo reasons."""

import grpc

from shared.errors import FailedPrecondition, ServiceError

ERROR_DOMAIN = "consent.trustfirst.dev"


class TokenAhead(FailedPrecondition):
    """The ledger read is older than the caller's min_consistency_token."""

    reason = "CONSISTENCY_TOKEN_AHEAD"


class WriteConflict(ServiceError):
    """Concurrent writes to one subject kept moving the ledger, so the caller may retry."""

    code = grpc.StatusCode.ABORTED
    reason = "WRITE_CONFLICT"


class LedgerInconsistent(ServiceError):
    """The stored ledger and state disagree, so writes to the subject stop until repair."""

    code = grpc.StatusCode.INTERNAL
    reason = "LEDGER_INCONSISTENT"


class SubjectMerged(FailedPrecondition):
    """Identity merged the subject into another profile, so its ledger takes no writes."""

    reason = "SUBJECT_MERGED"

    def __init__(self, subject_id: str, merged_into: str) -> None:
        super().__init__(
            f"subject {subject_id} was merged into {merged_into}; "
            "send the request for that subject",
            metadata={"merged_into_subject_id": merged_into},
        )
        self.merged_into = merged_into


class SubjectErased(FailedPrecondition):
    """The subject was erased; its consent is not recorded again."""

    reason = "SUBJECT_ERASED"

    def __init__(self, subject_id: str) -> None:
        super().__init__(
            f"subject {subject_id} was erased, so no consent is recorded for it"
        )


class StoreNotDurable(ServiceError):
    """Redis would not keep an acknowledged write through a crash, so writes stop."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "STORE_NOT_DURABLE"
