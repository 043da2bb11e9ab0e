"""Normalisation rules per identifier kind."""

import pytest

from services.identity.models import Kind
from services.identity.normalise import InvalidValue, Normaliser

VALID = [
    (Kind.EMAIL, "  Ana.Lopez@Example.COM \n", "ana.lopez@example.com"),
    (Kind.EMAIL, "ana+shop@mail.example.co.uk", "ana+shop@mail.example.co.uk"),
    (Kind.EMAIL, "ÉLODIE@exemple.fr", "élodie@exemple.fr"),
    (Kind.PHONE, "020 7946 0958", "+442079460958"),
    (Kind.PHONE, " +44 (0)20 7946 0958 ", "+442079460958"),
    (Kind.PHONE, "+1 650-253-0000", "+16502530000"),
    (Kind.PHONE, "0044 20 7946 0958", "+442079460958"),
    (Kind.ACCOUNT_ID, "  Acct-42 ", "Acct-42"),
    (Kind.LOYALTY_ID, "LOY 0001 2345", "LOY 0001 2345"),
    (
        Kind.DEVICE_ID,
        "\t3F2504E0-4F89-11D3-9A0C-0305E82C3301",
        "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
    ),
    (Kind.COOKIE_ID, "ck_é_1", "ck_é_1"),
    (Kind.POS_TOKEN, "tok_" + "x" * 252, "tok_" + "x" * 252),
]

INVALID = [
    (Kind.EMAIL, "", "must not be empty or only whitespace"),
    (Kind.EMAIL, "   ", "must not be empty or only whitespace"),
    (Kind.EMAIL, "ana.example.com", "must be an email address like name@example.com"),
    (Kind.EMAIL, "ana@example", "must be an email address like name@example.com"),
    (Kind.EMAIL, "ana@@example.com", "must be an email address like name@example.com"),
    (
        Kind.EMAIL,
        "ana lopez@example.com",
        "must be an email address like name@example.com",
    ),
    (Kind.EMAIL, "ana@example..com", "must be an email address like name@example.com"),
    (Kind.EMAIL, "ana@example.com.", "must be an email address like name@example.com"),
    (Kind.EMAIL, "@example.com", "must be an email address like name@example.com"),
    (
        Kind.EMAIL,
        "a" * 65 + "@example.com",
        "must have at most 64 characters before the @",
    ),
    (Kind.EMAIL, "ana@" + "d" * 247 + ".com", "must be at most 254 characters"),
    (Kind.EMAIL, "ana\x00@example.com", "must not contain control characters"),
    (Kind.PHONE, "12345", "must be a valid phone number"),
    (Kind.PHONE, "call me", "must be a phone number"),
    (Kind.PHONE, "+44 20 7946 0958\x07", "must not contain control characters"),
    (Kind.ACCOUNT_ID, "", "must not be empty or only whitespace"),
    (Kind.ACCOUNT_ID, "acct\n42", "must not contain control characters"),
    (Kind.DEVICE_ID, "d" * 257, "must be at most 256 characters"),
    (Kind.COOKIE_ID, "ck\x7f1", "must not contain control characters"),
    (Kind.POS_TOKEN, "\u00a0\u2003", "must not be empty or only whitespace"),
]


@pytest.mark.parametrize(("kind", "value", "expected"), VALID)
def test_normalise_valid(kind: Kind, value: str, expected: str) -> None:
    assert Normaliser("GB").normalise(kind, value) == expected


@pytest.mark.parametrize(("kind", "value", "message"), INVALID)
def test_normalise_invalid(kind: Kind, value: str, message: str) -> None:
    with pytest.raises(InvalidValue) as caught:
        Normaliser("GB").normalise(kind, value)

    assert str(caught.value) == message


def test_phone_without_region_needs_country_code() -> None:
    with pytest.raises(InvalidValue) as caught:
        Normaliser("").normalise(Kind.PHONE, "020 7946 0958")

    assert str(caught.value) == "must be a phone number with a + and country code"


def test_phone_without_region_accepts_international() -> None:
    assert Normaliser("").normalise(Kind.PHONE, "+44 20 7946 0958") == "+442079460958"


def test_phone_region_decides_national_number() -> None:
    assert Normaliser("US").normalise(Kind.PHONE, "(650) 253-0000") == "+16502530000"


def test_invalid_message_omits_value() -> None:
    with pytest.raises(InvalidValue) as caught:
        Normaliser("GB").normalise(Kind.EMAIL, "secret-person.example.com")

    assert "secret-person" not in str(caught.value)
