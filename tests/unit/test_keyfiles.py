"""Secrets outside the database: never derived from nothing, refused when weak."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway import keyfiles
from gateway.settings import Settings


def _settings(tmp_path: Path, environment: str, **values: object) -> Settings:
    return Settings(
        environment=environment,  # type: ignore[arg-type]
        data_dir=tmp_path,
        api_token=SecretStr("t" * 8 + keyfiles.new_secret()),
        **values,  # type: ignore[arg-type]
    )


def test_a_missing_secret_is_made_once_and_kept_private_outside_production(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "development")
    first = keyfiles.load_secret(settings, "jwt_secret")
    assert keyfiles.load_secret(settings, "jwt_secret") == first
    assert keyfiles.weakness(first.decode()) is None
    path = keyfiles.local_path(settings, "jwt_secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # Another data directory, another secret: nothing is derived from a shared constant.
    other = _settings(tmp_path / "other", "development")
    assert keyfiles.load_secret(other, "jwt_secret") != first


def test_production_refuses_a_missing_or_weak_secret_and_names_the_variable(
    tmp_path: Path,
) -> None:
    with pytest.raises(keyfiles.SecretError, match="GATEWAY_JWT_SECRET"):
        keyfiles.load_secret(_settings(tmp_path, "production"), "jwt_secret")
    for weak in ("x", "a" * 64, "abcabcabcabcabcabcabcabcabcabcabcabc"):
        settings = _settings(tmp_path, "production", jwt_secret=SecretStr(weak))
        with pytest.raises(keyfiles.SecretError, match="too weak"):
            keyfiles.load_secret(settings, "jwt_secret")
    assert not keyfiles.local_path(_settings(tmp_path, "production"), "jwt_secret").exists()


def test_a_secret_can_come_from_a_file(tmp_path: Path) -> None:
    value = keyfiles.new_secret()
    secret_file = tmp_path / "jwt"
    secret_file.write_text(value + "\n")
    settings = _settings(tmp_path, "production", jwt_secret_file=secret_file)
    assert keyfiles.load_secret(settings, "jwt_secret") == value.encode()
    missing = _settings(tmp_path, "production", jwt_secret_file=tmp_path / "nope")
    with pytest.raises(keyfiles.SecretError, match="GATEWAY_JWT_SECRET_FILE"):
        keyfiles.load_secret(missing, "jwt_secret")


def test_every_missing_secret_is_named_at_once(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "production", jwt_secret=SecretStr("short"))
    with pytest.raises(keyfiles.SecretError) as refused:
        keyfiles.check_secrets(settings, ("jwt_secret", "key_encryption_key"))
    assert "GATEWAY_JWT_SECRET is too weak" in str(refused.value)
    assert "GATEWAY_KEY_ENCRYPTION_KEY (or" in str(refused.value)
