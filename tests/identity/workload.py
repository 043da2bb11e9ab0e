"""A seeded retail workload of Resolve calls over overlapping identifier sets."""

from __future__ import annotations

import random

from tests.identity.conftest import (
    ACCOUNT_ID,
    COOKIE_ID,
    DEVICE_ID,
    EMAIL,
    LOYALTY_ID,
    PHONE,
    ident,
)
from trustfirst.identity.v1 import identity_pb2

PEOPLE = 120
SHARED_DEVICES = 4


def person_identifiers(person: int) -> list[identity_pb2.Identifier]:
    """Return one person's identifiers. Two people in three have an account id."""
    identifiers = [
        ident(EMAIL, f"p{person}-home@example.com"),
        ident(EMAIL, f"p{person}-work@example.com"),
        ident(PHONE, f"+44 20 7946 {person:04d}"),
        ident(LOYALTY_ID, f"LOY-{person}"),
        ident(DEVICE_ID, f"dev-{person}-phone"),
        ident(DEVICE_ID, f"dev-{person}-tablet"),
        *(ident(COOKIE_ID, f"ck-{person}-{number}") for number in range(4)),
    ]
    if person % 3 != 0:
        identifiers.append(ident(ACCOUNT_ID, f"acct-{person}"))
    return identifiers


def plan_calls(seed: int, count: int) -> list[list[identity_pb2.Identifier]]:
    """Return count Resolve identifier lists: 2 or 3 of one person's identifiers, now and
    then with a shared store device, another person's identifier or a placeholder."""
    rng = random.Random(seed)
    calls = []
    for _ in range(count):
        identifiers = rng.sample(
            person_identifiers(rng.randrange(PEOPLE)), rng.choice([2, 3])
        )
        draw = rng.random()
        if draw < 0.08:
            identifiers.append(
                ident(DEVICE_ID, f"store-{rng.randrange(SHARED_DEVICES)}")
            )
        elif draw < 0.13:
            identifiers.append(rng.choice(person_identifiers(rng.randrange(PEOPLE))))
        elif draw < 0.16:
            identifiers.append(ident(COOKIE_ID, rng.choice(["null", "undefined", "0"])))
        rng.shuffle(identifiers)
        calls.append(identifiers)
    return calls
