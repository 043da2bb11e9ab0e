"""Mutual TLS: the settings, and a server that accepts only certificates of its CA."""

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from pydantic import SecretStr

from shared.settings import ServiceSettings
from shared.tls import TlsConfigError, load_tls, tls_enabled
from tests.security.conftest import Pki
from tests.security.servers import (
    client_channel,
    health_status,
    start_server,
    tls_settings,
)

SERVING = health_pb2.HealthCheckResponse.SERVING


def test_tls_off_by_default() -> None:
    settings = ServiceSettings()

    assert tls_enabled(settings) is False
    assert load_tls(settings) is None


def test_tls_requires_ca(pki: Pki) -> None:
    settings = ServiceSettings(
        tls_cert_file=pki.server.cert_path, tls_key_file=pki.server.key_path
    )

    with pytest.raises(TlsConfigError, match="tls_ca_file is required"):
        load_tls(settings)


def test_tls_requires_one_key(pki: Pki) -> None:
    settings = tls_settings(
        pki.server,
        pki.authority.cert_path,
        tls_key=SecretStr(pki.server.key_pem.decode()),
    )

    with pytest.raises(TlsConfigError, match="exactly one of tls_key_file and tls_key"):
        load_tls(settings)


def test_tls_key_without_cert(pki: Pki) -> None:
    settings = ServiceSettings(tls_key_file=pki.server.key_path)

    with pytest.raises(TlsConfigError, match="without tls_cert_file"):
        load_tls(settings)


def test_tls_missing_file(pki: Pki, tmp_path: Path) -> None:
    settings = tls_settings(pki.server, tmp_path / "absent.pem")

    with pytest.raises(
        TlsConfigError, match=r"tls_ca_file .*absent\.pem cannot be read"
    ):
        load_tls(settings)


def test_tls_key_file_not_pem(pki: Pki, tmp_path: Path) -> None:
    # A certificate where the key belongs: the error names the setting, not the content.
    settings = tls_settings(
        pki.server, pki.authority.cert_path, tls_key_file=pki.server.cert_path
    )

    with pytest.raises(TlsConfigError) as caught:
        load_tls(settings)

    assert "tls_key_file" in str(caught.value)
    assert "BEGIN" not in str(caught.value)


def test_tls_key_from_environment(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTFIRST_TEST_TLS_CERT_FILE", str(pki.server.cert_path))
    monkeypatch.setenv("TRUSTFIRST_TEST_TLS_CA_FILE", str(pki.authority.cert_path))
    monkeypatch.setenv("TRUSTFIRST_TEST_TLS_KEY", pki.server.key_pem.decode())

    class _Settings(ServiceSettings, env_prefix="TRUSTFIRST_TEST_"):
        pass

    material = load_tls(_Settings())

    assert material is not None
    assert material.private_key == pki.server.key_pem


def test_tls_material_repr_hides_key(pki: Pki) -> None:
    material = load_tls(tls_settings(pki.server, pki.authority.cert_path))

    assert "PRIVATE" not in repr(material)
    assert pki.server.key_pem.decode() not in str(material)


def test_settings_repr_hides_env_key(pki: Pki) -> None:
    settings = tls_settings(
        pki.server,
        pki.authority.cert_path,
        tls_key_file=None,
        tls_key=SecretStr(pki.server.key_pem.decode()),
    )

    assert "PRIVATE" not in repr(settings)


async def test_mtls_client_with_ca_cert(pki: Pki) -> None:
    server, port = await start_server(tls_settings(pki.server, pki.authority.cert_path))
    client = tls_settings(pki.clients["decision"], pki.authority.cert_path)
    try:
        async with client_channel(port, client) as channel:
            status = await health_status(channel)
    finally:
        await server.stop(0)

    assert status == SERVING


async def test_mtls_client_by_hostname(pki: Pki) -> None:
    server, port = await start_server(tls_settings(pki.server, pki.authority.cert_path))
    client = tls_settings(pki.clients["decision"], pki.authority.cert_path)
    try:
        async with client_channel(port, client, host="localhost") as channel:
            status = await health_status(channel)
    finally:
        await server.stop(0)

    assert status == SERVING


async def test_mtls_rejects_plaintext_client(pki: Pki) -> None:
    server, port = await start_server(tls_settings(pki.server, pki.authority.cert_path))
    try:
        async with client_channel(port) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_status(channel)
    finally:
        await server.stop(0)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_rejects_client_without_cert(pki: Pki) -> None:
    server, port = await start_server(tls_settings(pki.server, pki.authority.cert_path))
    credentials = grpc.ssl_channel_credentials(pki.authority.cert_pem)
    try:
        async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_status(channel)
    finally:
        await server.stop(0)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_rejects_untrusted_ca(pki: Pki) -> None:
    server, port = await start_server(tls_settings(pki.server, pki.authority.cert_path))
    # The rogue certificate is named admin, but no CA the server trusts signed it.
    client = tls_settings(pki.rogue_admin, pki.authority.cert_path)
    try:
        async with client_channel(port, client) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_status(channel)
    finally:
        await server.stop(0)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_client_rejects_untrusted_server(pki: Pki) -> None:
    server_settings = tls_settings(pki.rogue_admin, pki.authority.cert_path)
    server, port = await start_server(server_settings)
    client = tls_settings(pki.clients["decision"], pki.authority.cert_path)
    try:
        async with client_channel(port, client) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_status(channel)
    finally:
        await server.stop(0)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
