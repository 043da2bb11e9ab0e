"""The suite as processes with mutual TLS on: callers need a certificate of the suite's
CA, each restricted method admits only its role, and the rejection comes before any
lookup or validation. The last test stops the suite and scans every log line for the
secrets it was given."""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.faults.harness import ProcessSuite, start_process_suite, train_test_model
from tests.security.certs import KeyPair, issue, make_authority
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc
from trustfirst.decision.v1 import decision_pb2, decision_pb2_grpc
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

IDENTITY_HASH_KEY = "identity-hash-key-for-the-log-scan-7c1d0f9e2b5a4d38"
SUBJECT_HASH_KEY = "consent-subject-key-for-the-log-scan-94e1a0b7c3f2d6"
CUSTOMER_EMAIL = "log-scan-customer-31f7@example.com"
ABSENT_PROFILE = "p_" + "0" * 32
SERVICE_NAMES = ("identity", "consent", "decision")
CALLERS = ("admin", "preference-center", "checkout")
TIMEOUT = 5.0


@dataclass
class TlsSuite:
    suite: ProcessSuite
    ca_pem: bytes
    callers: dict[str, KeyPair]
    service_keys: dict[str, KeyPair]

    def channel(self, service: str, caller: str | None) -> grpc.aio.Channel:
        """Return a channel to service as caller (a client certificate), or plaintext."""
        target = self.suite.target(service)
        if caller is None:
            return grpc.aio.insecure_channel(target)
        keys = self.callers[caller]
        credentials = grpc.ssl_channel_credentials(
            self.ca_pem, keys.key_pem, keys.cert_pem
        )
        return grpc.aio.secure_channel(target, credentials)


def _tls_env(service_keys: dict[str, KeyPair], ca_path: Path) -> dict[str, str]:
    env = {
        "TRUSTFIRST_IDENTITY_HASH_KEY": IDENTITY_HASH_KEY,
        "TRUSTFIRST_CONSENT_SUBJECT_HASH_KEY": SUBJECT_HASH_KEY,
        # The first call on a channel includes the TLS handshake, which can take longer
        # than the default 100 ms on a busy test machine.
        "TRUSTFIRST_DECISION_CONSENT_DEADLINE_MS": "2000",
        "TRUSTFIRST_DECISION_IDENTITY_DEADLINE_MS": "2000",
    }
    for name, pair in service_keys.items():
        prefix = f"TRUSTFIRST_{name.upper()}_"
        env[prefix + "LOG_LEVEL"] = "DEBUG"
        env[prefix + "TLS_CERT_FILE"] = str(pair.cert_path)
        env[prefix + "TLS_CA_FILE"] = str(ca_path)
        # Identity reads its key from the environment, the others from files.
        if name == "identity":
            env[prefix + "TLS_KEY"] = pair.key_pem.decode()
        else:
            env[prefix + "TLS_KEY_FILE"] = str(pair.key_path)
    return env


@pytest.fixture(scope="module")
async def tls_suite(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TlsSuite]:
    folder = tmp_path_factory.mktemp("tls-suite")
    authority = make_authority(folder / "pki")
    service_keys = {
        name: issue(authority, folder / "pki", name) for name in SERVICE_NAMES
    }
    callers = {
        name: issue(authority, folder / "pki", name, dns_names=(), ip_addresses=())
        for name in CALLERS
    }
    admin = callers["admin"]
    suite = start_process_suite(
        folder,
        train_test_model(folder / "model"),
        env=_tls_env(service_keys, authority.cert_path),
        health_credentials=grpc.ssl_channel_credentials(
            authority.cert_pem, admin.key_pem, admin.cert_pem
        ),
    )
    try:
        yield TlsSuite(suite, authority.cert_pem, callers, service_keys)
    finally:
        suite.stop()


async def _resolve(tls: TlsSuite, caller: str) -> str:
    async with tls.channel("identity", caller) as channel:
        reply = await identity_pb2_grpc.IdentityServiceStub(channel).Resolve(
            identity_pb2.ResolveRequest(
                identifiers=[
                    identity_pb2.Identifier(
                        kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value=CUSTOMER_EMAIL
                    )
                ],
                source="web",
            ),
            timeout=TIMEOUT,
        )
    return reply.profile_id


async def _code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("service", SERVICE_NAMES)
async def test_plaintext_caller_rejected(tls_suite: TlsSuite, service: str) -> None:
    async with tls_suite.channel(service, None) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        code = await _code_of(
            stub.GetProfile(
                identity_pb2.GetProfileRequest(profile_id=ABSENT_PROFILE),
                timeout=TIMEOUT,
            )
        )

    assert code == grpc.StatusCode.UNAVAILABLE


async def test_open_method_any_caller(tls_suite: TlsSuite) -> None:
    profile_id = await _resolve(tls_suite, "checkout")

    assert profile_id.startswith("p_")


@pytest.mark.parametrize(
    ("caller", "profile_id", "code"),
    [
        ("checkout", ABSENT_PROFILE, grpc.StatusCode.PERMISSION_DENIED),
        ("checkout", "not-a-profile-id", grpc.StatusCode.PERMISSION_DENIED),
        ("preference-center", ABSENT_PROFILE, grpc.StatusCode.PERMISSION_DENIED),
        ("admin", ABSENT_PROFILE, grpc.StatusCode.NOT_FOUND),
        ("admin", "not-a-profile-id", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_erase_profile_admin_only(
    tls_suite: TlsSuite, caller: str, profile_id: str, code: grpc.StatusCode
) -> None:
    async with tls_suite.channel("identity", caller) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        answer = await _code_of(
            stub.EraseProfile(
                identity_pb2.EraseProfileRequest(profile_id=profile_id), timeout=TIMEOUT
            )
        )

    assert answer == code


@pytest.mark.parametrize(
    ("caller", "code"),
    [
        ("checkout", grpc.StatusCode.PERMISSION_DENIED),
        ("preference-center", grpc.StatusCode.PERMISSION_DENIED),
        ("admin", grpc.StatusCode.NOT_FOUND),
    ],
)
async def test_export_profile_admin_only(
    tls_suite: TlsSuite, caller: str, code: grpc.StatusCode
) -> None:
    async with tls_suite.channel("identity", caller) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        answer = await _code_of(
            stub.ExportProfile(
                identity_pb2.ExportProfileRequest(profile_id=ABSENT_PROFILE),
                timeout=TIMEOUT,
            )
        )

    assert answer == code


async def test_split_profile_denied(tls_suite: TlsSuite) -> None:
    async with tls_suite.channel("identity", "checkout") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        answer = await _code_of(
            stub.SplitProfile(
                identity_pb2.SplitProfileRequest(
                    profile_id=ABSENT_PROFILE, merged_profile_id=ABSENT_PROFILE
                ),
                timeout=TIMEOUT,
            )
        )

    assert answer == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    ("caller", "code"),
    [
        ("checkout", grpc.StatusCode.PERMISSION_DENIED),
        ("admin", grpc.StatusCode.PERMISSION_DENIED),
        ("preference-center", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_record_consent_preference_center_only(
    tls_suite: TlsSuite, caller: str, code: grpc.StatusCode
) -> None:
    # No changes: the request is invalid, which only an allowed caller may learn.
    async with tls_suite.channel("consent", caller) as channel:
        stub = consent_pb2_grpc.ConsentServiceStub(channel)
        answer = await _code_of(
            stub.RecordConsent(
                consent_pb2.RecordConsentRequest(subject_id=ABSENT_PROFILE),
                timeout=TIMEOUT,
            )
        )

    assert answer == code


@pytest.mark.parametrize("caller", CALLERS)
async def test_check_consent_denied_to_callers(
    tls_suite: TlsSuite, caller: str
) -> None:
    async with tls_suite.channel("consent", caller) as channel:
        stub = consent_pb2_grpc.ConsentServiceStub(channel)
        answer = await _code_of(
            stub.CheckConsent(
                consent_pb2.CheckConsentRequest(subject_id=ABSENT_PROFILE),
                timeout=TIMEOUT,
            )
        )

    assert answer == grpc.StatusCode.PERMISSION_DENIED


async def test_decide_over_mtls(tls_suite: TlsSuite) -> None:
    profile_id = await _resolve(tls_suite, "checkout")
    changes = [
        consent_pb2.ConsentChange(
            purpose=consent_pb2.PURPOSE_PERSONALISATION,
            channel=consent_pb2.CHANNEL_WEB,
            action=consent_pb2.CONSENT_ACTION_GRANT,
        )
    ]
    async with tls_suite.channel("consent", "preference-center") as channel:
        await consent_pb2_grpc.ConsentServiceStub(channel).RecordConsent(
            consent_pb2.RecordConsentRequest(
                subject_id=profile_id, changes=changes, source="web", notice_version="1"
            ),
            timeout=TIMEOUT,
        )

    async with tls_suite.channel("decision", "checkout") as channel:
        reply = await decision_pb2_grpc.DecisionServiceStub(channel).Decide(
            decision_pb2.DecideRequest(
                profile_id=profile_id,
                touchpoint="home",
                channel=consent_pb2.CHANNEL_WEB,
            ),
            timeout=TIMEOUT,
        )

    # Decision reached consent over mutual TLS as the decision role: a failed check would
    # be silence with CONSENT_UNAVAILABLE.
    assert reply.silence_reason != decision_pb2.SILENCE_REASON_CONSENT_UNAVAILABLE
    assert reply.consent_token != ""


def _key_body_lines(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if line and "-----" not in line]


async def test_logs_free_of_secrets(tls_suite: TlsSuite) -> None:
    # Calls that log: a success, a rejection and an invalid request, then a clean stop.
    await _resolve(tls_suite, "checkout")
    async with tls_suite.channel("identity", "admin") as channel:
        await _code_of(
            identity_pb2_grpc.IdentityServiceStub(channel).EraseProfile(
                identity_pb2.EraseProfileRequest(profile_id="bad"), timeout=TIMEOUT
            )
        )
    tls_suite.suite.stop()
    logs = "\n".join(tls_suite.suite.logs().values())
    secrets = [IDENTITY_HASH_KEY, SUBJECT_HASH_KEY]
    for pair in tls_suite.service_keys.values():
        secrets += _key_body_lines(pair.key_pem)

    assert len(logs.splitlines()) > 20
    assert re.search("PRIVATE KEY", logs) is None
    assert [secret for secret in secrets if secret in logs] == []
    assert CUSTOMER_EMAIL not in logs
