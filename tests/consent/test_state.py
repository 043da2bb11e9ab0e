"""The state hash values: encoding, decoding and the verdict of each status."""

from services.consent.models import PairState
from services.consent.state import (
    DENIED,
    EXPIRED,
    GRANTED,
    NEVER_ASKED,
    WITHDRAWN,
    decode_state,
    encode_state,
    evaluate,
    resolve_never_asked,
)
from trustfirst.consent.v1 import consent_pb2 as pb

NOW = 1_750_000_000_000_000_000


def grant(expire_ns: int | None) -> PairState:
    return PairState(
        purpose=pb.PURPOSE_MARKETING,
        channel=pb.CHANNEL_PUSH,
        status=pb.CONSENT_STATUS_GRANTED,
        source="app|settings",
        notice_version='v"3"',
        update_ns=NOW - 5,
        expire_ns=expire_ns,
        ledger_sequence=12,
    )


def test_state_round_trip() -> None:
    state = grant(NOW + 10)

    assert decode_state("marketing:push", encode_state(state)) == state


def test_state_grant_allowed() -> None:
    assert evaluate(encode_state(grant(None)), NOW, NEVER_ASKED) == GRANTED


def test_state_grant_before_expiry_allowed() -> None:
    assert evaluate(encode_state(grant(NOW + 1)), NOW, NEVER_ASKED) == GRANTED


def test_state_grant_at_expiry_expired() -> None:
    assert evaluate(encode_state(grant(NOW)), NOW, NEVER_ASKED) == EXPIRED


def test_state_denied_and_withdrawn() -> None:
    assert evaluate('D||[1,1,"s","n"]', NOW, NEVER_ASKED) == DENIED
    assert evaluate('W||[1,1,"s","n"]', NOW, NEVER_ASKED) == WITHDRAWN


def test_state_unknown_code_denied() -> None:
    assert evaluate('X||[1,1,"s","n"]', NOW, NEVER_ASKED) == DENIED


def test_state_never_asked_denied() -> None:
    verdict = resolve_never_asked()

    assert evaluate(None, NOW, verdict) == NEVER_ASKED
    assert verdict.allowed is False
