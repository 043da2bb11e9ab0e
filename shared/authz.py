"""Per-method caller authorisation from the caller's TLS client certificate.

A policy maps roles to caller identities (the certificate's common name and subject
alternative names) and restricted methods to the roles allowed to call them. The check
runs before the servicer method, so a caller without the role gets PERMISSION_DENIED
whether or not the profile it names exists, and whether or not its request is valid.
Methods the policy does not list are open to every caller that passed the TLS handshake.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from shared.errors import ServiceError, to_rpc_status
from shared.handlers import Context
from trustfirst.consent.v1 import consent_pb2
from trustfirst.decision.v1 import decision_pb2
from trustfirst.identity.v1 import identity_pb2

if TYPE_CHECKING:
    from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

DEFAULT_ROLE_MEMBERS: Mapping[str, tuple[str, ...]] = {
    "decision": ("decision",),
    "preference-center": ("preference-center",),
    "admin": ("admin",),
}
"""Default members of each role: a certificate named like the role has it."""

DEFAULT_METHOD_ROLES: Mapping[str, tuple[str, ...]] = {
    # Consent checks feed decisions only; consent writes come from the preference center.
    "CheckConsent": ("decision",),
    "RecordConsent": ("preference-center",),
    "SetJurisdiction": ("preference-center",),
    # Subject rights and the release of a quarantined value are operator actions.
    "SplitProfile": ("admin",),
    "ExportProfile": ("admin",),
    "EraseProfile": ("admin",),
    "ReleaseQuarantinedValue": ("admin",),
}
"""Default roles of each restricted method, by method name."""

# Keys of the auth context whose values name the peer; all come from a verified certificate.
_IDENTITY_KEYS = (
    "x509_common_name",
    "x509_subject_alternative_name",
    "peer_dns",
    "x509_uri",
)


class AuthzConfigError(ValueError):
    """The authorisation policy names an unknown role or method."""


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "CALLER_NOT_AUTHORIZED"


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "CALLER_NOT_AUTHENTICATED"


class Verdict(enum.Enum):
    """Outcome of one authorisation check."""

    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"
    DENIED = "denied"


def known_methods() -> dict[str, str]:
    """Return every Trustfirst method, full name (``/pkg.Service/Method``) to bare name."""
    methods: dict[str, str] = {}
    for module in (identity_pb2, consent_pb2, decision_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods[f"/{service.full_name}/{method.name}"] = method.name
    return methods


@dataclass(frozen=True)
class AuthorizationPolicy:
    """The role membership of caller identities, and the roles of each restricted method."""

    role_members: Mapping[str, frozenset[str]]
    method_roles: Mapping[str, frozenset[str]]

    @classmethod
    def build(
        cls,
        role_members: Mapping[str, Iterable[str]],
        method_roles: Mapping[str, Iterable[str]],
    ) -> AuthorizationPolicy:
        """Return a checked policy. Raises AuthzConfigError on an unknown role or method.

        A method is named by its bare name, or by its full name with or without the
        leading slash. An unknown name is an error, so a typo cannot leave a method open.
        """
        methods = known_methods()
        bare_names = set(methods.values())
        members = {role: frozenset(names) for role, names in role_members.items()}
        restricted: dict[str, frozenset[str]] = {}
        for name, roles in method_roles.items():
            key = name if name in bare_names else "/" + name.lstrip("/")
            if key not in bare_names and key not in methods:
                raise AuthzConfigError(
                    f"authz_methods names an unknown method {name!r}"
                )
            unknown = sorted(set(roles) - members.keys())
            if unknown:
                raise AuthzConfigError(
                    f"authz_methods gives {name!r} the unknown roles {unknown}; "
                    "define them in authz_roles"
                )
            restricted[key] = frozenset(roles)
        return cls(members, restricted)

    def allowed_roles(self, method: str) -> frozenset[str] | None:
        """Return the roles that may call method (a full name), or None when it is open."""
        roles = self.method_roles.get(method)
        if roles is None:
            roles = self.method_roles.get(method.rsplit("/", 1)[-1])
        return roles

    def check(self, method: str, identities: Iterable[str]) -> Verdict:
        """Return whether a caller with identities may call method (a full name)."""
        allowed = self.allowed_roles(method)
        if allowed is None:
            return Verdict.ALLOWED
        names = set(identities)
        if not names:
            return Verdict.UNAUTHENTICATED
        for role in allowed:
            if names & self.role_members[role]:
                return Verdict.ALLOWED
        return Verdict.DENIED


def caller_identities(context: Context) -> tuple[str, ...]:
    """Return the names in the caller's verified client certificate, or () without TLS."""
    auth = context.auth_context()
    if auth.get("transport_security_type") != [b"ssl"]:
        return ()
    names: list[str] = []
    for key in _IDENTITY_KEYS:
        for value in auth.get(key, ()):
            name = value.decode("utf-8", errors="replace")
            if name not in names:
                names.append(name)
    return tuple(names)


class Authorizer:
    """Rejects a call to a restricted method unless the caller has one of its roles.

    ``shared.interceptor.ServerCallInterceptor`` runs the check before the request
    reaches the servicer, so no validation, lookup or write happens for a rejected call.
    """

    def __init__(self, policy: AuthorizationPolicy, domain: str) -> None:
        self._policy = policy
        self._domain = domain

    def restricts(self, method: str) -> bool:
        """Return whether method (a full name) needs a role."""
        return self._policy.allowed_roles(method) is not None

    async def check(self, method: str, context: Context) -> None:
        """Return when the caller may call method; otherwise abort the call."""
        identities = caller_identities(context)
        verdict = self._policy.check(method, identities)
        if verdict is Verdict.ALLOWED:
            return

        error: ServiceError
        if verdict is Verdict.UNAUTHENTICATED:
            error = Unauthenticated(f"{method} requires a client certificate")
        else:
            error = PermissionDenied(
                f"{method} is not allowed for caller {', '.join(identities)}",
                metadata={"method": method},
            )
        # NOTE: every rejection logs one line; repeated rejected calls are not rate-limited.
        logger.warning(
            "%s rejected: %s",
            method,
            verdict.value,
            extra={"caller": list(identities)},
        )
        await context.abort_with_status(to_rpc_status(error, self._domain))


def authorization_applies(settings: ServiceSettings) -> bool:
    """Return whether settings turn authorisation on: always with ``enforce``, and with
    ``auto`` when TLS is on (``tls_cert_file`` set)."""
    if settings.authorization == "off":
        return False
    return settings.authorization == "enforce" or settings.tls_cert_file is not None


def authorizer(settings: ServiceSettings, domain: str) -> Authorizer | None:
    """Return the authoriser that settings ask for, or None when authorisation is off.

    Raises AuthzConfigError when the policy in settings names an unknown role or method.
    """
    policy = AuthorizationPolicy.build(settings.authz_roles, settings.authz_methods)
    if not authorization_applies(settings):
        return None
    return Authorizer(policy, domain)
