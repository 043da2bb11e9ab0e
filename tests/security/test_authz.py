"""Per-method authorisation: the policy, and the interceptor on a mutual TLS server."""

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from shared.authz import (
    AuthorizationPolicy,
    Authorizer,
    AuthzConfigError,
    Verdict,
    authorizer,
)
from shared.errors import NotFound, handle_errors
from shared.interceptor import ServerCallInterceptor
from shared.settings import ServiceSettings
from tests.security.conftest import Pki
from tests.security.servers import client_channel, start_server, tls_settings
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc

CHECK = "/trustfirst.consent.v1.ConsentService/CheckConsent"
RECORD = "/trustfirst.consent.v1.ConsentService/RecordConsent"
LIST = "/trustfirst.consent.v1.ConsentService/ListConsents"
ERASE = "/trustfirst.identity.v1.IdentityService/EraseProfile"


def default_policy() -> AuthorizationPolicy:
    settings = ServiceSettings()
    return AuthorizationPolicy.build(settings.authz_roles, settings.authz_methods)


@pytest.mark.parametrize(
    ("method", "caller", "verdict"),
    [
        (CHECK, "decision", Verdict.ALLOWED),
        (CHECK, "preference-center", Verdict.DENIED),
        (CHECK, "admin", Verdict.DENIED),
        (RECORD, "preference-center", Verdict.ALLOWED),
        (RECORD, "decision", Verdict.DENIED),
        (ERASE, "admin", Verdict.ALLOWED),
        (ERASE, "decision", Verdict.DENIED),
        (ERASE, "checkout", Verdict.DENIED),
        (LIST, "checkout", Verdict.ALLOWED),
    ],
)
def test_policy_default(method: str, caller: str, verdict: Verdict) -> None:
    assert default_policy().check(method, [caller]) is verdict


def test_policy_without_identity() -> None:
    assert default_policy().check(CHECK, []) is Verdict.UNAUTHENTICATED


def test_policy_open_method_without_identity() -> None:
    assert default_policy().check(LIST, []) is Verdict.ALLOWED


def test_policy_matches_any_certificate_name() -> None:
    policy = AuthorizationPolicy.build(
        {"decision": ["spiffe://trustfirst/decision"]}, {"CheckConsent": ["decision"]}
    )

    verdict = policy.check(CHECK, ["decision-7f9c", "spiffe://trustfirst/decision"])

    assert verdict is Verdict.ALLOWED


def test_policy_full_method_name() -> None:
    policy = AuthorizationPolicy.build(
        {"admin": ["admin"]},
        {"trustfirst.consent.v1.ConsentService/ListConsents": ["admin"]},
    )

    assert policy.check(LIST, ["decision"]) is Verdict.DENIED
    assert policy.check(CHECK, ["decision"]) is Verdict.ALLOWED


def test_policy_unknown_method() -> None:
    with pytest.raises(AuthzConfigError, match="unknown method 'EraseProfil'"):
        AuthorizationPolicy.build({"admin": ["admin"]}, {"EraseProfil": ["admin"]})


def test_policy_unknown_role() -> None:
    with pytest.raises(AuthzConfigError, match=r"unknown roles \['auditor'\]"):
        AuthorizationPolicy.build({"admin": ["admin"]}, {"EraseProfile": ["auditor"]})


def test_policy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTFIRST_TEST_AUTHZ_ROLES", '{"ops": ["ops-console"]}')
    monkeypatch.setenv("TRUSTFIRST_TEST_AUTHZ_METHODS", '{"ExportProfile": ["ops"]}')

    class _Settings(ServiceSettings, env_prefix="TRUSTFIRST_TEST_"):
        pass

    settings = _Settings()
    policy = AuthorizationPolicy.build(settings.authz_roles, settings.authz_methods)

    assert (
        policy.check(
            "/trustfirst.identity.v1.IdentityService/ExportProfile", ["ops-console"]
        )
        is Verdict.ALLOWED
    )


def test_authorizer_off_without_tls() -> None:
    assert authorizer(ServiceSettings(), "test") is None


def test_authorizer_on_with_tls(pki: Pki) -> None:
    settings = tls_settings(pki.server, pki.authority.cert_path)

    assert authorizer(settings, "test") is not None


def test_authorizer_off_by_setting(pki: Pki) -> None:
    settings = tls_settings(pki.server, pki.authority.cert_path, authorization="off")

    assert authorizer(settings, "test") is None


def test_authorizer_checks_policy_when_off() -> None:
    settings = ServiceSettings(authz_methods={"NoSuchMethod": ["admin"]})

    with pytest.raises(AuthzConfigError):
        authorizer(settings, "test")


class _NoSubjects(consent_pb2_grpc.ConsentServiceServicer):
    """Knows no subject: every check and list is NOT_FOUND; counts the calls it gets."""

    def __init__(self) -> None:
        self.calls = 0

    @handle_errors("consent.test")
    async def CheckConsent(
        self, request: consent_pb2.CheckConsentRequest, context: Any
    ) -> consent_pb2.CheckConsentResponse:
        self.calls += 1
        raise NotFound(f"subject {request.subject_id} not found")

    @handle_errors("consent.test")
    async def ListConsents(
        self, request: consent_pb2.ListConsentsRequest, context: Any
    ) -> consent_pb2.ListConsentsResponse:
        self.calls += 1
        raise NotFound(f"subject {request.subject_id} not found")


async def _call(
    pki: Pki, caller: str | None, method: str, servicer: _NoSubjects, **settings: Any
) -> grpc.aio.AioRpcError:
    """Call method on a consent test server as caller (None: plaintext); return the error."""
    server_settings = (
        ServiceSettings(**settings)
        if caller is None
        else tls_settings(pki.server, pki.authority.cert_path, **settings)
    )
    checker = authorizer(server_settings, "consent.test")
    assert isinstance(checker, Authorizer)
    server, port = await start_server(
        server_settings,
        interceptors=[ServerCallInterceptor("consent.test", authorizer=checker)],
        servicers=[
            lambda s: consent_pb2_grpc.add_ConsentServiceServicer_to_server(servicer, s)
        ],
    )
    client = None
    if caller is not None:
        client = tls_settings(pki.clients[caller], pki.authority.cert_path)
    try:
        async with client_channel(port, client) as channel:
            stub = consent_pb2_grpc.ConsentServiceStub(channel)
            rpc = stub.CheckConsent if method == CHECK else stub.ListConsents
            request_type = (
                consent_pb2.CheckConsentRequest
                if method == CHECK
                else consent_pb2.ListConsentsRequest
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await rpc(request_type(subject_id="p_absent"), timeout=5)
    finally:
        await server.stop(0)
    return caught.value


async def test_denied_before_not_found(pki: Pki) -> None:
    servicer = _NoSubjects()

    error = await _call(pki, "checkout", CHECK, servicer)

    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert servicer.calls == 0


async def test_denied_error_info(pki: Pki) -> None:
    error = await _call(pki, "preference-center", CHECK, _NoSubjects())
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)

    assert info.reason == "CALLER_NOT_AUTHORIZED"
    assert info.domain == "consent.test"


async def test_allowed_caller_reaches_servicer(pki: Pki) -> None:
    servicer = _NoSubjects()

    error = await _call(pki, "decision", CHECK, servicer)

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert servicer.calls == 1


async def test_open_method_any_certificate(pki: Pki) -> None:
    error = await _call(pki, "checkout", LIST, _NoSubjects())

    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_enforced_without_tls(pki: Pki) -> None:
    servicer = _NoSubjects()

    error = await _call(pki, None, CHECK, servicer, authorization="enforce")

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert servicer.calls == 0


async def test_enforced_without_tls_open_method(pki: Pki) -> None:
    error = await _call(pki, None, LIST, _NoSubjects(), authorization="enforce")

    assert error.code() == grpc.StatusCode.NOT_FOUND
