"""The signing private keys are sealed at rest: only the key encryption key opens them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway import keyfiles
from gateway.settings import Settings
from gateway.signing import KeySeal, SigningKeyError, is_sealed

RAW = bytes(range(32))


def test_a_sealed_key_opens_with_its_key_and_id_only() -> None:
    seal = KeySeal(keyfiles.new_secret().encode())
    stored = seal.seal("k1", RAW)
    assert is_sealed(stored)
    assert RAW not in stored
    assert seal.open("k1", stored) == RAW
    assert seal.seal("k1", RAW) != stored, "a fresh nonce every time"
    with pytest.raises(SigningKeyError, match="GATEWAY_KEY_ENCRYPTION_KEY"):
        KeySeal(keyfiles.new_secret().encode()).open("k1", stored)
    with pytest.raises(SigningKeyError):
        seal.open("k2", stored)  # the key id is bound in: a row cannot be moved under another
    tampered = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(SigningKeyError):
        seal.open("k1", tampered)
    with pytest.raises(SigningKeyError, match="unencrypted"):
        seal.open("k1", RAW)


def test_the_key_encryption_key_comes_from_the_setting_or_its_file(tmp_path: Path) -> None:
    secret = keyfiles.new_secret()
    path = tmp_path / "kek"
    path.write_text(secret + "\n")
    token = SecretStr(keyfiles.new_secret())
    given = Settings(
        environment="production",
        data_dir=tmp_path / "a",
        api_token=token,
        key_encryption_key=SecretStr(secret),
    )
    from_file = Settings(
        environment="production",
        data_dir=tmp_path / "b",
        api_token=token,
        key_encryption_key_file=path,
    )
    stored = KeySeal.from_settings(given).seal("k1", RAW)
    assert KeySeal.from_settings(from_file).open("k1", stored) == RAW


def test_production_needs_a_strong_key_encryption_key(tmp_path: Path) -> None:
    token = SecretStr(keyfiles.new_secret())
    missing = Settings(environment="production", data_dir=tmp_path, api_token=token)
    with pytest.raises(keyfiles.SecretError, match="GATEWAY_KEY_ENCRYPTION_KEY"):
        KeySeal.from_settings(missing)
    weak = missing.model_copy(update={"key_encryption_key": SecretStr("x" * 40)})
    with pytest.raises(keyfiles.SecretError, match="too weak"):
        KeySeal.from_settings(weak)
    assert not (tmp_path / keyfiles.DIRECTORY).exists(), "never invented in production"


@pytest.mark.parametrize(
    "token", [None, "short-token-abc", "a" * 24 + "b" * 24, "abcdefghijklmnopqrstuvwx"]
)
def test_production_refuses_a_missing_or_weak_api_token(tmp_path: Path, token: str | None) -> None:
    with pytest.raises(ValueError, match="GATEWAY_API_TOKEN"):
        Settings(environment="production", data_dir=tmp_path, api_token=token)


def test_production_takes_a_strong_api_token(tmp_path: Path) -> None:
    token = keyfiles.new_secret()
    settings = Settings(environment="production", data_dir=tmp_path, api_token=token)
    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == token
