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
