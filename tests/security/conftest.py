"""Fixtures of the security tests: a test CA with a server certificate and one client
certificate per caller role, and a CA that the servers do not trust."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.security.certs import Authority, KeyPair, issue, make_authority

ROLE_CALLERS = ("decision", "preference-center", "admin", "checkout")
"""Common names of the client certificates; checkout has no role in the default policy."""


@dataclass(frozen=True)
class Pki:
    """Certificates of the security tests, all written under one folder."""

    authority: Authority
    server: KeyPair
    clients: dict[str, KeyPair]
    rogue_admin: KeyPair
    """A client certificate named admin, signed by a CA the servers do not trust."""


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder: Path = tmp_path_factory.mktemp("pki")
    authority = make_authority(folder)
    server = issue(authority, folder, "trustfirst-server")
    clients = {
        name: issue(authority, folder, name, dns_names=(), ip_addresses=())
        for name in ROLE_CALLERS
    }
    rogue = make_authority(folder / "rogue", "rogue-ca")
    rogue_admin = issue(rogue, folder / "rogue", "admin", dns_names=(), ip_addresses=())
    return Pki(authority, server, clients, rogue_admin)
