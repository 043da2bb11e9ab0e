"""Stable names of purposes, channels and actions, as stored in Redis and in the ledger.

Each name is the proto enum value name without its prefix, in lower case
(``PURPOSE_MARKETING`` is ``marketing``). Stored data refers to these names, so renaming
an enum value would need a data migration; ``buf breaking`` rejects such a rename.
A pair's field in the state hash is ``<purpose>:<channel>``, for example
``marketing:email``.
"""

from google.protobuf.descriptor import EnumDescriptor

from services.consent.models import RESET, Action, Channel, Pair, Purpose
from trustfirst.consent.v1 import consent_pb2


def _stable_names(descriptor: EnumDescriptor, prefix: str) -> dict[int, str]:
    return {
        value.number: value.name.removeprefix(prefix).lower()
        for value in descriptor.values
        if value.number != 0
    }


PURPOSE_NAMES: dict[Purpose, str] = {
    Purpose(number): name
    for number, name in _stable_names(
        consent_pb2.Purpose.DESCRIPTOR, "PURPOSE_"
    ).items()
}
CHANNEL_NAMES: dict[Channel, str] = {
    Channel(number): name
    for number, name in _stable_names(
        consent_pb2.Channel.DESCRIPTOR, "CHANNEL_"
    ).items()
}
ACTION_NAMES: dict[Action, str] = {
    Action(number): name
    for number, name in _stable_names(
        consent_pb2.ConsentAction.DESCRIPTOR, "CONSENT_ACTION_"
    ).items()
}

LEDGER_ACTION_NAMES: dict[Action, str] = {**ACTION_NAMES, RESET: "reset"}
"""Actions a ledger entry may carry: the contract's, and ``reset`` from merges."""

PURPOSES_BY_NAME = {name: number for number, name in PURPOSE_NAMES.items()}
CHANNELS_BY_NAME = {name: number for number, name in CHANNEL_NAMES.items()}
ACTIONS_BY_NAME = {name: number for number, name in LEDGER_ACTION_NAMES.items()}

PAIR_FIELDS: dict[tuple[int, int], str] = {
    (purpose, channel): f"{purpose_name}:{channel_name}"
    for purpose, purpose_name in PURPOSE_NAMES.items()
    for channel, channel_name in CHANNEL_NAMES.items()
}
"""State hash field of every known pair, keyed by ``(purpose, channel)`` or a Pair."""

PAIRS_BY_FIELD: dict[str, Pair] = {
    field: Pair(Purpose(purpose), Channel(channel))
    for (purpose, channel), field in PAIR_FIELDS.items()
}
"""The pair of every state hash field name."""
