"""Validation of decision requests and their conversion into domain types.

Every problem is collected with the dotted field path (``context.basket[2].quantity``) and
raised together as InvalidArgument.
"""

from collections.abc import Sequence

from google.protobuf import timestamp_pb2

from services.decision import limits
from services.decision.domain import (
    BasketLine,
    DecideQuery,
    ExplainQuery,
    PurchaseOutcome,
)
from shared.errors import Violations
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2
from trustfirst.identity.v1 import identity_pb2

# Timestamps from 1970-01-01 to 9999-12-31, the range google.protobuf.Timestamp allows
# from the epoch on; purchase times are stored as non-negative seconds.
_MAX_TIMESTAMP_SECONDS = 253_402_300_799


def decide_query(request: decision_pb2.DecideRequest) -> DecideQuery:
    """Return the DecideQuery of request. Raises InvalidArgument listing every problem."""
    violations = Violations()
    profile_id = _check_customer(request.profile_id, request.identifiers, violations)

    if not limits.TOUCHPOINT_PATTERN.match(request.touchpoint):
        violations.add(
            "touchpoint", "required: 1 to 64 printable characters without spaces"
        )
    if request.channel not in consent_pb2.Channel.values() or request.channel == 0:
        violations.add("channel", "required: a specified channel such as CHANNEL_WEB")
    if len(request.request_id) > limits.MAX_REQUEST_ID_LENGTH:
        violations.add(
            "request_id", f"at most {limits.MAX_REQUEST_ID_LENGTH} characters"
        )

    basket = _check_basket(request.context.basket, violations)
    event_time = None
    if request.context.HasField("event_time"):
        event_time = _check_time(
            request.context.event_time, "context.event_time", violations
        )
    violations.raise_if_any()

    return DecideQuery(
        profile_id=profile_id,
        identifiers=tuple(request.identifiers),
        touchpoint=request.touchpoint,
        channel=request.channel,
        basket=basket,
        event_time=event_time,
    )


def purchase_outcome(request: decision_pb2.RecordOutcomeRequest) -> PurchaseOutcome:
    """Return the PurchaseOutcome of request. Raises InvalidArgument listing every problem."""
    violations = Violations()
    profile_id = _check_customer(request.profile_id, request.identifiers, violations)

    if request.kind != decision_pb2.OUTCOME_KIND_PURCHASE:
        violations.add("kind", "required: OUTCOME_KIND_PURCHASE")
    if not 0 <= request.amount_cents <= limits.MAX_ORDER_AMOUNT_CENTS:
        violations.add(
            "amount_cents", f"must be 0 to {limits.MAX_ORDER_AMOUNT_CENTS} cents"
        )
    if not 1 <= request.quantity <= limits.MAX_ORDER_QUANTITY:
        violations.add("quantity", f"must be 1 to {limits.MAX_ORDER_QUANTITY}")
    if not 1 <= len(request.event_id) <= limits.MAX_EVENT_ID_LENGTH:
        violations.add(
            "event_id", f"required: 1 to {limits.MAX_EVENT_ID_LENGTH} characters"
        )
    if len(request.decision_id) > limits.MAX_DECISION_ID_LENGTH:
        violations.add(
            "decision_id", f"at most {limits.MAX_DECISION_ID_LENGTH} characters"
        )
    if not 0 <= request.discount_cents <= limits.MAX_ORDER_AMOUNT_CENTS:
        violations.add(
            "discount_cents", f"must be 0 to {limits.MAX_ORDER_AMOUNT_CENTS} cents"
        )

    event_time = None
    if request.HasField("event_time"):
        event_time = _check_time(request.event_time, "event_time", violations)
    violations.raise_if_any()

    return PurchaseOutcome(
        profile_id=profile_id,
        identifiers=tuple(request.identifiers),
        event_id=request.event_id,
        amount_cents=request.amount_cents,
        quantity=request.quantity,
        event_time=event_time,
        decision_id=request.decision_id,
        discount_cents=request.discount_cents,
    )


def explain_query(request: decision_pb2.ExplainDecisionRequest) -> ExplainQuery:
    """Return the ExplainQuery of request. Raises InvalidArgument listing every problem."""
    violations = Violations()
    if not limits.is_valid_profile_id(request.profile_id):
        violations.add(
            "profile_id",
            "required: 1 to 128 letters, digits, '.', '_', ':' or '-'",
        )
    if not limits.DECISION_ID_PATTERN.match(request.decision_id):
        violations.add(
            "decision_id",
            f"required: 1 to {limits.MAX_DECISION_ID_LENGTH} letters, digits, '_' or '-'",
        )
    violations.raise_if_any()
    return ExplainQuery(profile_id=request.profile_id, decision_id=request.decision_id)


def _check_customer(
    profile_id: str,
    identifiers: Sequence[identity_pb2.Identifier],
    violations: Violations,
) -> str | None:
    """Check that exactly one of profile_id and identifiers is set; return the profile id."""
    if profile_id and identifiers:
        violations.add("identifiers", "set either profile_id or identifiers, not both")
        return None
    if not profile_id and not identifiers:
        violations.add("profile_id", "required: set profile_id or identifiers")
        return None

    if profile_id:
        if not limits.is_valid_profile_id(profile_id):
            violations.add(
                "profile_id",
                "invalid: expected 1 to 128 letters, digits, '.', '_', ':' or '-'",
            )
        return profile_id

    if len(identifiers) > limits.MAX_IDENTIFIERS:
        violations.add("identifiers", f"at most {limits.MAX_IDENTIFIERS} identifiers")
    for index, identifier in enumerate(identifiers[: limits.MAX_IDENTIFIERS]):
        path = f"identifiers[{index}]"
        if (
            identifier.kind == identity_pb2.IDENTIFIER_KIND_UNSPECIFIED
            or identifier.kind not in identity_pb2.IdentifierKind.values()
        ):
            violations.add(f"{path}.kind", "required: a specified identifier kind")
        if not identifier.value.strip():
            violations.add(f"{path}.value", "required: a non-empty value")
        elif len(identifier.value) > limits.MAX_IDENTIFIER_VALUE_LENGTH:
            violations.add(
                f"{path}.value",
                f"at most {limits.MAX_IDENTIFIER_VALUE_LENGTH} characters",
            )
    return None


def _check_basket(
    items: Sequence[decision_pb2.BasketItem], violations: Violations
) -> tuple[BasketLine, ...]:
    if len(items) > limits.MAX_BASKET_ITEMS:
        violations.add("context.basket", f"at most {limits.MAX_BASKET_ITEMS} items")
        return ()

    lines: list[BasketLine] = []
    for index, item in enumerate(items):
        path = f"context.basket[{index}]"
        if not 1 <= len(item.sku) <= limits.MAX_SKU_LENGTH:
            violations.add(
                f"{path}.sku", f"required: 1 to {limits.MAX_SKU_LENGTH} characters"
            )
        if not 1 <= item.quantity <= limits.MAX_ITEM_QUANTITY:
            violations.add(
                f"{path}.quantity", f"must be 1 to {limits.MAX_ITEM_QUANTITY}"
            )
        if not 0 <= item.unit_price_cents <= limits.MAX_UNIT_PRICE_CENTS:
            violations.add(
                f"{path}.unit_price_cents",
                f"must be 0 to {limits.MAX_UNIT_PRICE_CENTS} cents",
            )
        lines.append(BasketLine(item.sku, item.quantity, item.unit_price_cents))
    return tuple(lines)


def _check_time(
    timestamp: timestamp_pb2.Timestamp, path: str, violations: Violations
) -> int | None:
    if not 0 <= timestamp.seconds <= _MAX_TIMESTAMP_SECONDS or not (
        0 <= timestamp.nanos < 1_000_000_000
    ):
        violations.add(path, "invalid: expected a time from 1970-01-01 to 9999-12-31")
        return None
    return int(timestamp.seconds)
