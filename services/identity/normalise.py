"""Normalisation of identifier values, one rule per kind.

Every kind first has surrounding whitespace removed (``str.strip``), then must be non-empty,
at most ``MAX_VALUE_CHARS`` characters and free of control characters. Then:

- email: lower-cased, at most ``MAX_EMAIL_CHARS`` characters, shaped like ``local@domain.tld``;
- phone: parsed by ``phonenumbers`` with the configured default region, rejected unless
  valid, and written in E.164 (``+`` and digits);
- every other kind: kept as it is (ids may be case-sensitive).

Error descriptions never contain the value, because they are logged and returned.
"""

import re
import unicodedata

import phonenumbers

from services.identity.models import Kind

MAX_VALUE_CHARS = 256
"""Maximum length of an identifier value after stripping, in characters."""

MAX_EMAIL_CHARS = 254
"""Maximum length of an email address, in characters (the SMTP path limit of 256 less the brackets)."""

MAX_EMAIL_LOCAL_CHARS = 64
"""Maximum length of the part before the ``@`` of an email address, in characters (SMTP limit)."""

# One "@", a local part without whitespace or "@", and a domain of at least two non-empty
# dot-separated labels. Quoted local parts and address literals are not accepted.
_EMAIL_PATTERN = re.compile(r"[^\s@]+@[^\s@.]+(\.[^\s@.]+)+")


class InvalidValue(ValueError):
    """A value that cannot be normalised. The message describes the rule, never the value."""


def has_control_character(text: str) -> bool:
    """Return True when text contains a character of Unicode category Cc."""
    return any(unicodedata.category(char) == "Cc" for char in text)


class Normaliser:
    """Normalises identifier values; phone numbers without a country code use the region."""

    def __init__(self, phone_default_region: str = "") -> None:
        self._phone_region = phone_default_region.upper() or None

    def normalise(self, kind: Kind, value: str) -> str:
        """Return the normalised value of an identifier of this kind, or raise InvalidValue."""
        # NOTE: no Unicode normalisation (NFC), so a composed and a decomposed spelling of
        # one value give two different hashes.
        text = value.strip()
        if not text:
            raise InvalidValue("must not be empty or only whitespace")
        if len(text) > MAX_VALUE_CHARS:
            raise InvalidValue(f"must be at most {MAX_VALUE_CHARS} characters")
        if has_control_character(text):
            raise InvalidValue("must not contain control characters")

        if kind is Kind.EMAIL:
            return _normalise_email(text)
        if kind is Kind.PHONE:
            return self._normalise_phone(text)
        return text

    def _normalise_phone(self, text: str) -> str:
        try:
            number = phonenumbers.parse(text, self._phone_region)
        except phonenumbers.NumberParseException:
            if self._phone_region is None:
                raise InvalidValue(
                    "must be a phone number with a + and country code"
                ) from None
            raise InvalidValue("must be a phone number") from None

        if not phonenumbers.is_valid_number(number):
            raise InvalidValue("must be a valid phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _normalise_email(text: str) -> str:
    address = text.lower()
    if len(address) > MAX_EMAIL_CHARS:
        raise InvalidValue(f"must be at most {MAX_EMAIL_CHARS} characters")
    if _EMAIL_PATTERN.fullmatch(address) is None:
        raise InvalidValue("must be an email address like name@example.com")
    if len(address.split("@", 1)[0]) > MAX_EMAIL_LOCAL_CHARS:
        raise InvalidValue(
            f"must have at most {MAX_EMAIL_LOCAL_CHARS} characters before the @"
        )
    return address
