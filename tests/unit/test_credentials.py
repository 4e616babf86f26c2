"""The CLI's saved logins: one per gateway, so two demos on one machine keep their own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from maeul import credentials

A = "http://127.0.0.1:8000"
B = "http://127.0.0.1:8001"


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("GATEWAY_URL", raising=False)
    monkeypatch.delenv("GATEWAY_API_TOKEN", raising=False)
    return tmp_path


def test_two_gateways_logins_are_each_used_for_their_own_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials.save(A, "token-a", refresh_token="refresh-a", who="admin")
    credentials.save(f"{B}/", "token-b", refresh_token="refresh-b", who="admin")

    assert credentials.resolve() == (B, "token-b"), "the last login is the one in use"
    monkeypatch.setenv("GATEWAY_URL", A)
    assert credentials.resolve() == (A, "token-a")
    monkeypatch.setenv("GATEWAY_URL", f"{B}/")
    assert credentials.resolve() == (B, "token-b")
    assert credentials.path().stat().st_mode & 0o777 == 0o600


def test_a_gateway_without_a_saved_login_never_gets_another_s_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    credentials.save(A, "token-a")
    monkeypatch.setenv("GATEWAY_URL", B)
    with pytest.raises(typer.Exit) as exited:
        credentials.resolve()
    assert exited.value.exit_code == 2
    assert "maeul login" in capsys.readouterr().err


def test_the_old_single_login_file_is_read_and_kept_on_the_next_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials.path().parent.mkdir(parents=True)
    old = {"url": A, "token": "token-a", "refresh_token": "refresh-a", "who": "admin"}
    credentials.path().write_text(json.dumps(old))
    assert credentials.resolve() == (A, "token-a")
    assert credentials.saved()["refresh_token"] == "refresh-a"

    credentials.save(B, "token-b")
    monkeypatch.setenv("GATEWAY_URL", A)
    assert credentials.resolve() == (A, "token-a"), "the migrated login survives another's"


def test_logging_out_of_one_gateway_keeps_the_other() -> None:
    credentials.save(A, "token-a")
    credentials.save(B, "token-b")
    assert credentials.forget(B)
    assert credentials.resolve() == (A, "token-a")
    assert credentials.forget()
    assert not credentials.path().exists()
    assert not credentials.forget()
