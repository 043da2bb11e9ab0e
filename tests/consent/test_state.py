"""The state hash values: encoding, decoding and the verdict of each status."""

from services.consent.ledger import (
    MERGED_INTO_ENTRY_TYPE,
    SPLIT_ENTRY_TYPE,
    LedgerEntry,
    SubjectLink,
)
from services.consent.models import RESET, Change, Pair, PairState
from services.consent.state import (
    DENIED,
    EXPIRED,
    GRANTED,
    NEVER_ASKED,
    NO_OBJECTION,
    WITHDRAWN,
    change_for_value,
    decode_state,
    derive_state,
    encode_state,
    evaluate,
    restriction_rank,
    state_update,
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


def test_state_never_asked_uses_default() -> None:
    assert evaluate(None, NOW, NEVER_ASKED) == NEVER_ASKED
    assert evaluate(None, NOW, NO_OBJECTION) == NO_OBJECTION
    assert NEVER_ASKED.allowed is False
    assert NO_OBJECTION.allowed is True


def entry(
    sequence: int, *changes: Change, entry_type: str = "record", **fields: object
) -> LedgerEntry:
    return LedgerEntry(
        sequence=sequence,
        prev_hash="0" * 64,
        subject_id="s",
        time_ns=NOW + sequence,
        source="web",
        notice_version="v1",
        idempotency_key=None,
        changes=changes,
        type=entry_type,
        **fields,  # type: ignore[arg-type]
    )


def test_update_sets_and_resets_pairs() -> None:
    update = state_update(
        entry(
            4,
            Change(pb.PURPOSE_MARKETING, pb.CHANNEL_SMS, pb.CONSENT_ACTION_DENY),
            Change(pb.PURPOSE_MARKETING, pb.CHANNEL_PUSH, RESET),
        ),
        "ab" * 32,
    )

    assert update.set["ledger_sequence"] == "4"
    assert update.set["ledger_head"] == "ab" * 32
    assert update.set["marketing:sms"] == 'D||[4,1750000000000000004,"web","v1"]'
    assert update.delete == ["marketing:push"]


def test_update_merged_into_and_split() -> None:
    closing = entry(2, entry_type=MERGED_INTO_ENTRY_TYPE, link=SubjectLink("survivor"))
    reopening = entry(3, entry_type=SPLIT_ENTRY_TYPE, jurisdiction="US")

    assert state_update(closing, "h").set["merged_into"] == "survivor"
    assert state_update(reopening, "h").delete == ["merged_into"]
    assert state_update(reopening, "h").set["jurisdiction"] == "US"


def test_derive_state_replays_in_order() -> None:
    grant = Change(pb.PURPOSE_ANALYTICS, pb.CHANNEL_WEB, pb.CONSENT_ACTION_GRANT)
    reset = Change(pb.PURPOSE_ANALYTICS, pb.CHANNEL_WEB, RESET)

    state = derive_state([(entry(1, grant), "h1"), (entry(2, reset), "h2")])

    assert state == {"ledger_sequence": "2", "ledger_head": "h2"}


RANKED_VALUES = [
    ('G||[1,1,"s","n"]', "live grant without expiry"),
    (f'G|{NOW + 100}|[1,1,"s","n"]', "live grant expiring later"),
    (f'G|{NOW + 10}|[1,1,"s","n"]', "live grant expiring sooner"),
    (None, "never asked"),
    ('D||[1,1,"s","n"]', "denied"),
    ('W||[1,1,"s","n"]', "withdrawn"),
]


def test_rank_orders_restriction() -> None:
    ranks = [restriction_rank(value, NOW) for value, _ in RANKED_VALUES]

    assert ranks == sorted(ranks)
    assert len(set(ranks)) == len(ranks)


def test_rank_expired_grant_as_denied() -> None:
    expired = f'G|{NOW}|[1,1,"s","n"]'

    assert restriction_rank(expired, NOW) == restriction_rank('D||[1,1,"s","n"]', NOW)


def test_change_for_value_copies_status() -> None:
    pair = Pair(pb.PURPOSE_MARKETING, pb.CHANNEL_EMAIL)

    grant = change_for_value(pair, f'G|{NOW}|[1,1,"s","n"]')
    withdraw = change_for_value(pair, 'W||[1,1,"s","n"]')
    reset = change_for_value(pair, None)

    assert grant == Change(pair.purpose, pair.channel, pb.CONSENT_ACTION_GRANT, NOW)
    assert withdraw.action == pb.CONSENT_ACTION_WITHDRAW
    assert reset.action == RESET
