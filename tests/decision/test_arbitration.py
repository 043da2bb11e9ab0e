"""Candidate scores and the choice between the candidates and silence."""

import random

import numpy as np
import pytest

from services.decision.arbitration import (
    cap_reached,
    choose,
    eligible_mask,
    expected_order_value,
    score_candidates,
)
from services.decision.catalog import CatalogAction, ContactCap, build_candidate_set
from services.decision.features import PurchaseAggregate
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2

EMAIL = consent_pb2.CHANNEL_EMAIL
SMS = consent_pb2.CHANNEL_SMS
MARKETING = consent_pb2.PURPOSE_MARKETING
PERSONALISATION = consent_pb2.PURPOSE_PERSONALISATION

DISCOUNT = CatalogAction(
    action_id="discount",
    kind=decision_pb2.ACTION_KIND_DISCOUNT,
    channel=EMAIL,
    purposes=(MARKETING, PERSONALISATION),
    touchpoints=(),
    cost_cents=2,
    uplift=0.1,
    discount_rate=0.1,
)
CONTENT = CatalogAction(
    action_id="content",
    kind=decision_pb2.ACTION_KIND_CONTENT,
    channel=EMAIL,
    purposes=(MARKETING,),
    touchpoints=(),
    cost_cents=1,
    uplift=0.02,
)
SHIPPING = CatalogAction(
    action_id="shipping",
    kind=decision_pb2.ACTION_KIND_DISCOUNT,
    channel=EMAIL,
    purposes=(PERSONALISATION,),
    touchpoints=(),
    cost_cents=0,
    uplift=0.05,
    discount_cents=300,
    min_purchase_count=2,
)
CANDIDATES = build_candidate_set([DISCOUNT, CONTENT, SHIPPING])

STATUS = decision_pb2.CandidateStatus
REASON = decision_pb2.SilenceReason


def test_candidate_pairs() -> None:
    assert CANDIDATES.pairs == ((MARKETING, EMAIL), (PERSONALISATION, EMAIL))
    assert CANDIDATES.action_pairs == ((0, 1), (0,), (1,))


def test_scores_written_out() -> None:
    # p = 0.2, V = 4000 cents, margin 0.3.
    # discount: q = 0.08; 0.3 * 0.08 * 4000 - 0.28 * 400 - 2 = 96 - 112 - 2 = -18
    # content:  q = 0.016; 0.3 * 0.016 * 4000 - 0 - 1 = 18.2
    # shipping: q = 0.04; 0.3 * 0.04 * 4000 - 0.24 * 300 - 0 = 48 - 72 = -24
    scores = score_candidates(CANDIDATES, 0.2, 4000.0, 0.3)

    assert scores.tolist() == pytest.approx([-18.0, 18.2, -24.0])


def test_discount_scores_low_for_likely_buyer() -> None:
    unlikely = score_candidates(CANDIDATES, 0.1, 4000.0, 0.3)[0]
    likely = score_candidates(CANDIDATES, 0.9, 4000.0, 0.3)[0]

    assert unlikely == pytest.approx(30.0)
    assert likely == pytest.approx(-354.0)


def test_order_value_from_history() -> None:
    aggregate = PurchaseAggregate(purchase_count=4, total_amount_cents=10_000)

    assert expected_order_value(aggregate, 3500) == 2500.0


def test_order_value_default() -> None:
    assert expected_order_value(PurchaseAggregate(), 3500) == 3500.0


def test_choose_best_permitted() -> None:
    choice = choose(CANDIDATES, np.array([50.0, 20.0, 10.0]), (True, True), 5)

    assert choice.chosen == 0
    assert choice.silence_reason == REASON.Value("SILENCE_REASON_UNSPECIFIED")
    assert choice.statuses == (
        STATUS.Value("CANDIDATE_STATUS_CHOSEN"),
        STATUS.Value("CANDIDATE_STATUS_OUTSCORED"),
        STATUS.Value("CANDIDATE_STATUS_OUTSCORED"),
    )


def test_choose_skips_refused_pair() -> None:
    # Personalisation refused: the discount and shipping need it, content does not.
    choice = choose(CANDIDATES, np.array([50.0, 20.0, 10.0]), (True, False), 5)

    assert choice.chosen == 1
    assert choice.statuses == (
        STATUS.Value("CANDIDATE_STATUS_NO_CONSENT"),
        STATUS.Value("CANDIDATE_STATUS_CHOSEN"),
        STATUS.Value("CANDIDATE_STATUS_NO_CONSENT"),
    )


def test_choose_all_refused() -> None:
    choice = choose(CANDIDATES, np.array([50.0, 20.0, 10.0]), (False, False), 5)

    assert choice.chosen is None
    assert choice.silence_reason == REASON.Value("SILENCE_REASON_NO_CONSENT")


def test_choose_silence_scores_best() -> None:
    choice = choose(CANDIDATES, np.array([-5.0, 0.0, -1.0]), (True, True), 5)

    assert choice.chosen is None
    assert choice.silence_reason == REASON.Value("SILENCE_REASON_SILENCE_SCORED_BEST")
    assert STATUS.Value("CANDIDATE_STATUS_CHOSEN") not in choice.statuses


def test_choose_ineligible() -> None:
    # Only shipping is permitted, and it needs 2 purchases on record.
    choice = choose(CANDIDATES, np.array([50.0, 20.0, 10.0]), (False, True), 1)

    assert choice.chosen is None
    assert choice.silence_reason == REASON.Value("SILENCE_REASON_NO_ELIGIBLE_ACTION")
    assert choice.statuses[2] == STATUS.Value("CANDIDATE_STATUS_INELIGIBLE")


def test_choose_without_candidates() -> None:
    choice = choose(build_candidate_set([]), np.array([]), (True,), 0)

    assert choice.silence_reason == REASON.Value("SILENCE_REASON_NO_ELIGIBLE_ACTION")


RECENT = CatalogAction(
    action_id="recent-only",
    kind=decision_pb2.ACTION_KIND_CONTENT,
    channel=EMAIL,
    purposes=(MARKETING,),
    touchpoints=(),
    cost_cents=0,
    max_recency_days=30,
)
LAPSED = CatalogAction(
    action_id="lapsed-only",
    kind=decision_pb2.ACTION_KIND_DISCOUNT,
    channel=EMAIL,
    purposes=(MARKETING,),
    touchpoints=(),
    cost_cents=0,
    min_recency_days=60,
    min_basket_cents=2000,
)
RULED = build_candidate_set([RECENT, LAPSED])


@pytest.mark.parametrize(
    ("recency", "basket", "expected"),
    [
        (10.0, 5000, [True, False]),
        (90.0, 5000, [False, True]),
        (90.0, 1999, [False, False]),
        (float("nan"), 5000, [False, True]),
    ],
)
def test_eligibility_rules(recency: float, basket: int, expected: list[bool]) -> None:
    assert eligible_mask(RULED, 1, recency, basket).tolist() == expected


def test_cap_reached_counts_channel_window() -> None:
    cap = ContactCap(EMAIL, max_contacts=2, period_days=7)
    day = 86_400
    now = 100 * day
    # One email 3 days ago, one 8 days ago (outside), one SMS yesterday.
    contacts = [(now - 3 * day, EMAIL), (now - 8 * day, EMAIL), (now - day, SMS)]

    assert cap_reached([cap], contacts, now) is False
    assert cap_reached([cap], [*contacts, (now, EMAIL)], now) is True


def test_choose_capped() -> None:
    choice = choose(
        CANDIDATES, np.array([50.0, 20.0, 10.0]), (True, True), 5, capped=True
    )

    assert choice.chosen is None
    assert choice.silence_reason == REASON.Value("SILENCE_REASON_CONTACT_CAP")
    assert choice.statuses == (STATUS.Value("CANDIDATE_STATUS_CAPPED"),) * 3


def test_choose_holdout() -> None:
    choice = choose(
        CANDIDATES, np.array([50.0, 20.0, 10.0]), (True, True), 5, holdout=True
    )

    assert choice.chosen is None
    assert choice.silence_reason == REASON.Value("SILENCE_REASON_HOLDOUT")
    assert choice.propensity == 1.0
    assert choice.best == 0
    assert choice.statuses == (STATUS.Value("CANDIDATE_STATUS_UNSPECIFIED"),) * 3


def test_choose_without_exploration_propensity() -> None:
    choice = choose(
        CANDIDATES, np.array([50.0, 20.0, 10.0]), (True, True), 5, rng=random.Random(1)
    )

    assert choice.chosen == 0
    assert choice.propensity == 1.0
    assert choice.explored is False


def test_choose_full_exploration_uniform() -> None:
    rng = random.Random(4)
    counts = [0, 0, 0, 0]
    for _ in range(4000):
        choice = choose(
            CANDIDATES,
            np.array([50.0, 20.0, 10.0]),
            (True, True),
            5,
            exploration_share=1.0,
            rng=rng,
        )
        counts[3 if choice.chosen is None else choice.chosen] += 1
        assert choice.propensity == pytest.approx(0.25)
        assert choice.explored is True

    # Four options (three candidates and silence) drawn uniformly.
    assert min(counts) > 900
    assert max(counts) < 1100


def test_choose_partial_exploration_probabilities() -> None:
    # Share 0.2 over four options: the best gets 0.8 + 0.05, the others 0.05 each.
    choice = choose(
        CANDIDATES,
        np.array([50.0, 20.0, 10.0]),
        (True, True),
        5,
        exploration_share=0.2,
        rng=random.Random(0),
    )

    assert choice.probabilities == pytest.approx((0.85, 0.05, 0.05))
    assert choice.silence_probability == pytest.approx(0.05)
    assert sum(choice.probabilities) + choice.silence_probability == pytest.approx(1.0)


def test_choose_explored_silence_reason() -> None:
    class SilenceFirst(random.Random):
        def random(self) -> float:
            return 0.0

        def choice(self, options):  # type: ignore[no-untyped-def]
            return options[-1]

    choice = choose(
        CANDIDATES,
        np.array([50.0, 20.0, 10.0]),
        (True, True),
        5,
        exploration_share=0.5,
        rng=SilenceFirst(),
    )

    assert choice.chosen is None
    assert choice.silence_reason == REASON.Value("SILENCE_REASON_EXPLORATION")
    assert choice.propensity == pytest.approx(0.125)
