"""Loading of the identifier hash key, and the keyed hash itself."""

from pathlib import Path

import pytest
from pydantic import SecretStr

from services.identity.hashing import HashKeyError, IdentifierHasher, load_hash_key
from services.identity.models import Kind
from services.identity.settings import IdentitySettings

KEY = "k" * 32


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRUSTFIRST_IDENTITY_HASH_KEY", raising=False)
    monkeypatch.delenv("TRUSTFIRST_IDENTITY_HASH_KEY_FILE", raising=False)


def test_key_from_setting() -> None:
    settings = IdentitySettings(hash_key=SecretStr(KEY))

    assert load_hash_key(settings) == KEY.encode()


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTFIRST_IDENTITY_HASH_KEY", KEY)

    assert load_hash_key(IdentitySettings()) == KEY.encode()


def test_key_file_drops_trailing_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "hash-key"
    key_file.write_bytes(KEY.encode() + b"\n")
    monkeypatch.setenv("TRUSTFIRST_IDENTITY_HASH_KEY_FILE", str(key_file))

    assert load_hash_key(IdentitySettings()) == KEY.encode()


def test_key_missing_names_settings() -> None:
    with pytest.raises(HashKeyError) as caught:
        load_hash_key(IdentitySettings())

    assert "TRUSTFIRST_IDENTITY_HASH_KEY " in str(caught.value)
    assert "TRUSTFIRST_IDENTITY_HASH_KEY_FILE" in str(caught.value)


def test_key_too_short() -> None:
    settings = IdentitySettings(hash_key=SecretStr("short-secret-31-bytes-long-abcd"))

    with pytest.raises(HashKeyError) as caught:
        load_hash_key(settings)

    assert "is 31 bytes" in str(caught.value)
    assert "short-secret" not in str(caught.value)


def test_key_file_too_short(tmp_path: Path) -> None:
    key_file = tmp_path / "hash-key"
    key_file.write_bytes(b"x" * 31 + b"\n")

    with pytest.raises(HashKeyError, match="is 31 bytes"):
        load_hash_key(IdentitySettings(hash_key_file=key_file))


def test_key_file_unreadable(tmp_path: Path) -> None:
    settings = IdentitySettings(hash_key_file=tmp_path / "absent")

    with pytest.raises(HashKeyError, match="cannot read the identifier hash key file"):
        load_hash_key(settings)


def test_key_and_file_both_set(tmp_path: Path) -> None:
    settings = IdentitySettings(hash_key=SecretStr(KEY), hash_key_file=tmp_path / "k")

    with pytest.raises(HashKeyError, match="set only one"):
        load_hash_key(settings)


def test_settings_repr_hides_key() -> None:
    settings = IdentitySettings(hash_key=SecretStr(KEY))

    assert KEY not in repr(settings)


def test_hash_is_hmac_of_kind_and_value() -> None:
    hasher = IdentifierHasher(b"test-identity-hash-key-0123456789abcdef")

    hashed = hasher.hash(Kind.EMAIL, "ana@example.com")

    assert hashed.value_hash == (
        "60ad40e50eb44329d65d304a7dacaf895578e545194e9e5ce5817c9d625b318c"
    )


def test_hash_depends_on_kind() -> None:
    hasher = IdentifierHasher(KEY.encode())

    account = hasher.hash(Kind.ACCOUNT_ID, "42")
    loyalty = hasher.hash(Kind.LOYALTY_ID, "42")

    assert account.value_hash != loyalty.value_hash


def test_hasher_repr_hides_key() -> None:
    assert KEY not in repr(IdentifierHasher(KEY.encode()))


def test_unknown_phone_region_rejected() -> None:
    with pytest.raises(ValueError, match="unknown phone region"):
        IdentitySettings(phone_default_region="XX")
