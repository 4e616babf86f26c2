"""Where the CLI finds the gateway and its credentials: environment first, then the saved login.

`maeul login` (and `make run`, for the demo's city administrator) saves the gateway's URL, a
short-lived access token and a refresh token; an access token about to expire is renewed with
the refresh token before use, so a saved login keeps working until it is revoked.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import typer

DEFAULT_URL = "http://127.0.0.1:8000"
_RENEW_BEFORE_S = 60


def path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "maeul" / "credentials.json"


def save(url: str, token: str, *, refresh_token: str | None = None, who: str | None = None) -> Path:
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    body: dict[str, str] = {"url": url, "token": token}
    if refresh_token:
        body["refresh_token"] = refresh_token
    if who:
        body["who"] = who
    tmp.write_text(json.dumps(body))
    tmp.replace(target)
    return target


def forget() -> bool:
    try:
        path().unlink()
    except FileNotFoundError:
        return False
    return True


def saved() -> dict[str, str]:
    if not path().exists():
        return {}
    try:
        body = json.loads(path().read_text())
    except (OSError, ValueError):
        return {}
    return {k: str(v) for k, v in body.items()} if isinstance(body, dict) else {}


def _expires_at(token: str) -> float | None:
    """The `exp` of a JWT, read without checking it (the gateway checks it); None otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims: Any = json.loads(base64.urlsafe_b64decode(padded))
        return float(claims["exp"])
    except (ValueError, KeyError, TypeError):
        return None


def _renewed(url: str, stored: dict[str, str]) -> str | None:
    refresh = stored.get("refresh_token")
    if not refresh:
        return None
    try:
        response = httpx.post(
            f"{url}/api/v1/auth/refresh", json={"refresh_token": refresh}, timeout=10
        )
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    body = response.json()
    save(url, body["access_token"], refresh_token=body["refresh_token"], who=stored.get("who"))
    return str(body["access_token"])


def resolve() -> tuple[str, str]:
    url = os.environ.get("GATEWAY_URL")
    token = os.environ.get("GATEWAY_API_TOKEN")
    stored = saved()
    url = (url or stored.get("url") or DEFAULT_URL).rstrip("/")
    if not token and stored.get("token"):
        token = stored["token"]
        expires = _expires_at(token)
        if expires is not None and expires - time.time() < _RENEW_BEFORE_S:
            renewed = _renewed(url, stored)
            if renewed is None:
                typer.echo(
                    "로그인이 만료되었습니다. `maeul login`으로 다시 로그인하세요. / "
                    "The saved login has expired: run `maeul login` again.",
                    err=True,
                )
                raise typer.Exit(2)
            token = renewed
    if not token:
        typer.echo(
            "로그인 정보가 없습니다. `maeul login`으로 로그인하거나 `make run`을 먼저 "
            "실행하세요. / Not logged in: run `maeul login`, or `make run` first.",
            err=True,
        )
        raise typer.Exit(2)
    return url, token
