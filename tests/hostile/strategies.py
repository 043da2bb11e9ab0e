"""Hypothesis strategies that build any protobuf request message from its descriptor,
biased towards the inputs a hostile caller sends: empty, oversized, control and
unicode-heavy strings, out-of-range numbers and enum values, and large repeated fields."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

FieldDescriptor = descriptor.FieldDescriptor

MAX_DEPTH = 3
MAX_REPEATED = 8
"""Items in a repeated field of the generic strategy; the huge-batch tests go further."""

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

# Any code point except surrogates, which cannot be encoded as UTF-8 at all.
_ANY_CHARACTER = st.characters(exclude_categories=("Cs",))
_UNICODE_HEAVY = st.characters(
    categories=("Mn", "Me", "Cf", "Zl", "Zp", "Co", "So", "Lo", "Cc"),
)

PROFILE_IDS = st.sampled_from(
    ["p_" + "0" * 32, "p_" + "f" * 32, "p_" + "a1" * 16, "P_" + "0" * 32, "p_"]
)
"""Profile ids of the valid form (which then reach the store) and near misses."""

PLACEHOLDERS = st.sampled_from(
    ["null", "undefined", "0000", "test@test.com", " ", "\x00", "\u202e", "%s%n"]
)

STRINGS = st.one_of(
    st.text(_ANY_CHARACTER, max_size=40),
    st.text(_UNICODE_HEAVY, min_size=1, max_size=300),
    st.text("0123456789abcdef", min_size=60, max_size=70),
    PROFILE_IDS,
    PLACEHOLDERS,
    st.integers(min_value=200, max_value=70_000).map(lambda n: "\u00e9" * n),
    st.emails(),
)


def _integer(field: FieldDescriptor) -> st.SearchStrategy[int]:
    if field.type in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        low, high = 0, 2**32 - 1
    elif field.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        low, high = 0, 2**64 - 1
    elif field.type in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        low, high = INT64
    else:
        low, high = INT32
    return st.one_of(
        st.integers(-3, 3),
        st.integers(low, high),
        st.sampled_from([low, high]),
    )


def _scalar(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return STRINGS
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        # Open enums keep unknown numbers, so a caller can send any int32.
        known = [value.number for value in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(*INT32))
    if kind == FieldDescriptor.TYPE_MESSAGE:
        return messages(field.message_type, depth + 1)
    return _integer(field)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


@st.composite
def _message(
    draw: st.DrawFn, message_descriptor: descriptor.Descriptor, depth: int
) -> Message:
    message_class = _message_class(message_descriptor)
    message = message_class()
    for field in message_descriptor.fields:
        if depth >= MAX_DEPTH and field.type == FieldDescriptor.TYPE_MESSAGE:
            continue
        if not draw(st.booleans()):
            continue
        values = _scalar(field, depth)
        if _is_repeated(field):
            items = draw(st.lists(values, max_size=MAX_REPEATED))
            container = getattr(message, field.name)
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                for item in items:
                    container.add().CopyFrom(item)
            else:
                container.extend(items)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(message, field.name).CopyFrom(draw(values))
        else:
            setattr(message, field.name, draw(values))
    return message


def messages(
    message_descriptor: descriptor.Descriptor, depth: int = 0
) -> st.SearchStrategy[Message]:
    """Return a strategy of messages of the type message_descriptor describes."""
    return _message(message_descriptor, depth)


def _message_class(message_descriptor: descriptor.Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(message_descriptor)
