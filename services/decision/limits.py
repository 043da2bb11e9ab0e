"""Input limits of the decision service, shared by request validation and the stores."""

import re

# Profile ids go into Redis keys as the hash tag between braces, so braces and whitespace
# are excluded. Hex ids, UUIDs and prefixed ids fit well within 128 characters.
PROFILE_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Same range as LookupRequest.identifiers in the identity contract.
MAX_IDENTIFIERS = 32

# Maximum length of an identifier value sent on to identity; no real identifier is longer.
MAX_IDENTIFIER_VALUE_LENGTH = 256

# Touchpoint names such as "checkout" or "app.home"; printable, without whitespace.
TOUCHPOINT_PATTERN = re.compile(r"^[\x21-\x7e]{1,64}$")

# A basket larger than this is not a retail basket; it bounds the work per request.
MAX_BASKET_ITEMS = 200
MAX_SKU_LENGTH = 64
MAX_ITEM_QUANTITY = 10_000
# $1M per unit: far above any catalog price, well inside int64 after multiplying by quantity.
MAX_UNIT_PRICE_CENTS = 100_000_000

# Same bound as the CDNOW reader: $10M per order.
MAX_ORDER_AMOUNT_CENTS = 1_000_000_000
MAX_ORDER_QUANTITY = 100_000

MAX_EVENT_ID_LENGTH = 128
MAX_DECISION_ID_LENGTH = 64
# Decision ids are 32 hex digits; ExplainDecision accepts any id that fits a Redis key.
DECISION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_REQUEST_ID_LENGTH = 64


def is_valid_profile_id(profile_id: str) -> bool:
    """Return whether profile_id can be used in the service's Redis keys."""
    return PROFILE_ID_PATTERN.match(profile_id) is not None
