"""Operator commands of ``trustfirst`` that call running services and print JSON.

Each command opens a channel to one service, sends one request, and prints the response
as JSON on stdout. A failed call raises CallFailed with the status code, message and any
field violations, which the command line prints on stderr before exiting with status 1.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import grpc
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

DEFAULT_TARGETS = {
    "identity": "127.0.0.1:50051",
    "consent": "127.0.0.1:50052",
    "decision": "127.0.0.1:50053",
}
DEFAULT_TIMEOUT_SECONDS = 5.0
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class CallFailed(Exception):
    """A call that ended with a non-OK status, described for a person."""


def target_of(service: str) -> str:
    """Return the target of service: ``TRUSTFIRST_<SERVICE>_TARGET``, else the ``up`` port."""
    return (
        os.environ.get(f"TRUSTFIRST_{service.upper()}_TARGET")
        or (DEFAULT_TARGETS[service])
    )


def _enum_value(enum: Any, prefix: str, text: str) -> int:
    """Return the value of an enum name given with or without prefix, in any case."""
    name = text.strip().upper().replace("-", "_")
    if not name.startswith(prefix):
        name = prefix + name
    try:
        value: int = enum.Value(name)
    except ValueError:
        choices = ", ".join(
            entry.name.removeprefix(prefix).lower()
            for entry in enum.DESCRIPTOR.values
            if entry.number != 0
        )
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}: expected one of {choices}"
        ) from None
    return value


def purpose(text: str) -> int:
    """Parse a purpose such as ``personalisation`` or ``PURPOSE_MARKETING``."""
    return _enum_value(consent_pb2.Purpose, "PURPOSE_", text)


def channel(text: str) -> int:
    """Parse a channel such as ``web`` or ``CHANNEL_EMAIL``."""
    return _enum_value(consent_pb2.Channel, "CHANNEL_", text)


def identifier(text: str) -> identity_pb2.Identifier:
    """Parse ``KIND=VALUE``, for example ``email=ana@example.com`` or ``phone=+44...``."""
    kind, separator, value = text.partition("=")
    if not separator or not value:
        raise argparse.ArgumentTypeError(
            f"invalid identifier {text!r}: expected KIND=VALUE, such as email=ana@example.com"
        )
    kind_value = _enum_value(identity_pb2.IdentifierKind, "IDENTIFIER_KIND_", kind)
    return identity_pb2.Identifier(
        kind=identity_pb2.IdentifierKind.ValueType(kind_value), value=value
    )


def timestamp(text: str) -> timestamp_pb2.Timestamp:
    """Parse an ISO 8601 time with a UTC offset, such as ``2026-01-31T12:00:00Z``."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: expected ISO 8601 such as 2026-01-31T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"invalid time {text!r}: add a UTC offset such as Z or +01:00"
        )
    result = timestamp_pb2.Timestamp()
    result.FromDatetime(moment)
    return result


def _shortcut(kind: str) -> Callable[[str], identity_pb2.Identifier]:
    return lambda value: identifier(f"{kind}={value}")


def add_identifier_options(parser: argparse.ArgumentParser) -> None:
    """Add the identifier options; every one appends to ``args.identifiers`` in order."""
    group = parser.add_argument_group("identifiers (in the order given)")
    group.add_argument(
        "--id",
        "-i",
        dest="identifiers",
        action="append",
        type=identifier,
        metavar="KIND=VALUE",
        help="an identifier of any kind: email, phone, account_id, loyalty_id, "
        "device_id, cookie_id or pos_token",
    )
    for kind in ("email", "phone", "account_id", "loyalty_id"):
        group.add_argument(
            f"--{kind.replace('_', '-')}",
            dest="identifiers",
            action="append",
            type=_shortcut(kind),
            metavar="VALUE",
            help=f"same as --id {kind}=VALUE",
        )


def add_target_option(parser: argparse.ArgumentParser, service: str) -> None:
    parser.add_argument(
        f"--{service}",
        dest="target",
        default=target_of(service),
        metavar="HOST:PORT",
        help=f"{service} service address (default: $TRUSTFIRST_{service.upper()}_TARGET "
        f"or {DEFAULT_TARGETS[service]})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_SECONDS,
        help=f"deadline of the call, in seconds (default: {DEFAULT_TIMEOUT_SECONDS:g})",
    )


def to_json(message: Message) -> str:
    """Return message as indented JSON with proto field names and every field shown."""
    data = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return json.dumps(data, indent=2)


def describe_error(error: grpc.RpcError, service: str, target: str) -> str:
    """Return the status code, message and field violations of a failed call."""
    failed: Any = error
    code: grpc.StatusCode = failed.code()
    lines = [f"{code.name}: {failed.details() or ''}"]
    trailing: Sequence[tuple[str, str | bytes]] = failed.trailing_metadata() or ()
    for key, value in trailing:
        if key != _STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        for detail in status_pb2.Status.FromString(value).details:
            bad_request = error_details_pb2.BadRequest()
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(bad_request):
                lines.extend(
                    f"  {v.field}: {v.description}"
                    for v in bad_request.field_violations
                )
            elif detail.Unpack(info):
                lines.append(f"  reason {info.reason} (domain {info.domain})")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        lines.append(
            f"  is {service} running at {target}? Start the suite with `trustfirst up`, "
            f"or pass --{service} HOST:PORT"
        )
    return "\n".join(lines)


STUBS: dict[str, Callable[[grpc.Channel], Any]] = {
    "identity": identity_pb2_grpc.IdentityServiceStub,
    "consent": consent_pb2_grpc.ConsentServiceStub,
    "decision": decision_pb2_grpc.DecisionServiceStub,
}


def call(
    args: argparse.Namespace, service: str, method: str, request: Message
) -> Message:
    """Send request to method of service at args.target; raise CallFailed on an error."""
    with grpc.insecure_channel(args.target) as grpc_channel:
        stub = STUBS[service](grpc_channel)
        try:
            response: Message = getattr(stub, method)(request, timeout=args.timeout)
        except grpc.RpcError as error:
            raise CallFailed(describe_error(error, service, args.target)) from error
    return response


def _customer(
    request: Any, profile_id: str | None, identifiers: Sequence[Any] | None
) -> None:
    """Set the profile id or the identifiers of a decision request, whichever was given."""
    if profile_id:
        request.profile_id = profile_id
    if identifiers:
        request.identifiers.extend(identifiers)


def resolve(args: argparse.Namespace) -> Message:
    request = identity_pb2.ResolveRequest(
        identifiers=args.identifiers or [], source=args.source
    )
    return call(args, "identity", "Resolve", request)


def lookup(args: argparse.Namespace) -> Message:
    request = identity_pb2.LookupRequest(identifiers=args.identifiers or [])
    return call(args, "identity", "Lookup", request)


CONSENT_ACTIONS = {
    "grant": consent_pb2.CONSENT_ACTION_GRANT,
    "deny": consent_pb2.CONSENT_ACTION_DENY,
    "withdraw": consent_pb2.CONSENT_ACTION_WITHDRAW,
}


def record_consent(args: argparse.Namespace) -> Message:
    """Record one change per purpose x channel pair, all with the command's action."""
    changes = []
    for purpose_value, channel_value in itertools.product(args.purposes, args.channels):
        change = consent_pb2.ConsentChange(
            purpose=purpose_value,
            channel=channel_value,
            action=CONSENT_ACTIONS[args.command],
        )
        if args.expire_time is not None:
            change.expire_time.CopyFrom(args.expire_time)
        changes.append(change)
    request = consent_pb2.RecordConsentRequest(
        subject_id=args.profile_id,
        changes=changes,
        source=args.source,
        notice_version=args.notice_version,
        idempotency_key=args.idempotency_key or "",
    )
    return call(args, "consent", "RecordConsent", request)


def check(args: argparse.Namespace) -> Message:
    request = consent_pb2.CheckConsentRequest(
        subject_id=args.profile_id,
        pairs=[
            consent_pb2.PurposeChannel(purpose=p, channel=c)
            for p, c in itertools.product(args.purposes, args.channels)
        ],
        min_consistency_token=args.min_token or "",
    )
    return call(args, "consent", "CheckConsent", request)


def decide(args: argparse.Namespace) -> Message:
    request = decision_pb2.DecideRequest(
        touchpoint=args.touchpoint,
        channel=args.channel,
        request_id=args.request_id or "",
    )
    _customer(request, args.profile_id, args.identifiers)
    if args.event_time is not None:
        request.context.event_time.CopyFrom(args.event_time)
    return call(args, "decision", "Decide", request)


def outcome(args: argparse.Namespace) -> Message:
    request = decision_pb2.RecordOutcomeRequest(
        kind=decision_pb2.OUTCOME_KIND_PURCHASE,
        amount_cents=args.amount_cents,
        quantity=args.quantity,
        event_id=args.event_id,
        decision_id=args.decision_id or "",
    )
    _customer(request, args.profile_id, args.identifiers)
    if args.event_time is not None:
        request.event_time.CopyFrom(args.event_time)
    return call(args, "decision", "RecordOutcome", request)


def actions(args: argparse.Namespace) -> Message:
    return call(args, "decision", "ListActions", decision_pb2.ListActionsRequest())


COMMANDS: dict[str, Callable[[argparse.Namespace], Message]] = {
    "resolve": resolve,
    "lookup": lookup,
    "grant": record_consent,
    "deny": record_consent,
    "withdraw": record_consent,
    "check": check,
    "decide": decide,
    "outcome": outcome,
    "actions": actions,
}


def _add_consent_pairs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("profile_id", help="the profile id from resolve or lookup")
    parser.add_argument(
        "--purpose",
        dest="purposes",
        action="append",
        type=purpose,
        required=True,
        help="personalisation, marketing, profiling or analytics; repeat for several",
    )
    parser.add_argument(
        "--channel",
        dest="channels",
        action="append",
        type=channel,
        required=True,
        help="email, sms, push, in_app, web or in_store; repeat for several "
        "(every purpose is paired with every channel)",
    )


def _add_customer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile-id", help="the customer's profile id")
    add_identifier_options(parser)


def add_parsers(commands: Any) -> None:
    """Add the client commands to the ``trustfirst`` subcommand parsers."""
    for name, service, text in (
        (
            "resolve",
            "identity",
            "link identifiers into one profile (creates or merges)",
        ),
        ("lookup", "identity", "find the profile of the first known identifier"),
    ):
        parser = commands.add_parser(name, help=text, description=text)
        add_identifier_options(parser)
        add_target_option(parser, service)
        if name == "resolve":
            parser.add_argument(
                "--source", default="cli", help="system that saw the identifiers"
            )

    for name in CONSENT_ACTIONS:
        text = f"record a consent {name} for every purpose x channel pair"
        parser = commands.add_parser(name, help=text, description=text)
        _add_consent_pairs(parser)
        parser.add_argument(
            "--source", default="cli", help="where the customer made the choice"
        )
        parser.add_argument(
            "--notice-version",
            required=True,
            help="version of the notice the customer was shown",
        )
        parser.add_argument(
            "--idempotency-key", help="makes a retried request apply once"
        )
        parser.add_argument(
            "--expire-time",
            type=timestamp,
            help="end of a grant (ISO 8601, for example 2027-01-01T00:00:00Z)",
        )
        add_target_option(parser, "consent")

    parser = commands.add_parser(
        "check", help="check consent for purpose x channel pairs"
    )
    _add_consent_pairs(parser)
    parser.add_argument(
        "--min-token",
        help="consistency token; the response reads a ledger at least as new as it",
    )
    add_target_option(parser, "consent")

    parser = commands.add_parser("decide", help="ask for the next best action")
    _add_customer(parser)
    parser.add_argument(
        "--touchpoint", required=True, help="for example checkout or home"
    )
    parser.add_argument(
        "--channel", type=channel, required=True, help="for example web"
    )
    parser.add_argument(
        "--event-time", type=timestamp, help="time of the touchpoint (ISO 8601)"
    )
    parser.add_argument("--request-id", help="caller id of the request, echoed in logs")
    add_target_option(parser, "decision")

    parser = commands.add_parser("outcome", help="record a purchase")
    _add_customer(parser)
    parser.add_argument(
        "--amount-cents", type=int, required=True, help="order value, in cents"
    )
    parser.add_argument(
        "--quantity", type=int, default=1, help="number of items (default: 1)"
    )
    parser.add_argument(
        "--event-id", required=True, help="unique id of the purchase event"
    )
    parser.add_argument("--decision-id", help="the decision that preceded the purchase")
    parser.add_argument(
        "--event-time", type=timestamp, help="time of the purchase (ISO 8601)"
    )
    add_target_option(parser, "decision")

    parser = commands.add_parser(
        "actions", help="list the decision service's action catalog"
    )
    add_target_option(parser, "decision")
