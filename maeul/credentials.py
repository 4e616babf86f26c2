"""Where the CLI finds the gateway and its credentials: environment first, then the saved login.

`maeul login` (and `make run`, for the demo's city administrator) saves, per gateway URL, a
short-lived access token and a refresh token; an access token about to expire is renewed with
the refresh token before use, so a saved login keeps working until it is revoked. Logins to
several gateways (two demos on one machine) live side by side: GATEWAY_URL picks one, else the
last one logged in to is used.
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


def _key(url: str) -> str:
    return url.rstrip("/")


def _read() -> dict[str, Any]:
    """The saved logins as {"current": url, "logins": {url: login}}; a file from before logins
    were kept per gateway (one login with its "url") reads as that one login."""
    try:
        body: Any = json.loads(path().read_text())
    except (OSError, ValueError):
        return {"current": None, "logins": {}}
    if not isinstance(body, dict):
        return {"current": None, "logins": {}}
    if "logins" not in body:
        url = body.get("url")
        if not isinstance(url, str) or not url:
            return {"current": None, "logins": {}}
        login = {k: str(v) for k, v in body.items() if k != "url"}
        return {"current": _key(url), "logins": {_key(url): login}}
    logins = body.get("logins")
    current = body.get("current")
    return {
        "current": current if isinstance(current, str) else None,
        "logins": {
            str(url): {k: str(v) for k, v in login.items()}
            for url, login in (logins.items() if isinstance(logins, dict) else [])
            if isinstance(login, dict)
        },
    }


def _write(state: dict[str, Any]) -> Path:
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps({"version": 2, **state}))
    tmp.replace(target)
    return target


def save(
    url: str,
    token: str,
    *,
    refresh_token: str | None = None,
    who: str | None = None,
    make_current: bool = True,
) -> Path:
    """Keep the login for this gateway (others' logins stay) and, unless renewing one,
    make it the one used when GATEWAY_URL does not name another."""
    state = _read()
    login: dict[str, str] = {"token": token}
    if refresh_token:
        login["refresh_token"] = refresh_token
    if who:
        login["who"] = who
    state["logins"][_key(url)] = login
    if make_current or state["current"] is None:
        state["current"] = _key(url)
    return _write(state)


def forget(url: str | None = None) -> bool:
    """Forget the login for `url` (default: the one in use); the others stay."""
    state = _read()
    key = _key(url) if url else state["current"]
    if key not in state["logins"]:
        return False
    del state["logins"][key]
    if state["current"] == key:
        state["current"] = next(iter(state["logins"]), None)
    if state["logins"]:
        _write(state)
    else:
        path().unlink(missing_ok=True)
    return True


def current_url() -> str:
    """The gateway the CLI talks to: GATEWAY_URL, else the last one logged in to."""
    url = os.environ.get("GATEWAY_URL") or _read()["current"] or DEFAULT_URL
    return _key(str(url))


def saved(url: str | None = None) -> dict[str, str]:
    """The saved login for `url` (default: `current_url()`), with its "url"; {} when none."""
    key = _key(url) if url else current_url()
    login = _read()["logins"].get(key)
    return {"url": key, **login} if login else {}


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
    save(
        url,
        body["access_token"],
        refresh_token=body["refresh_token"],
        who=stored.get("who"),
        make_current=False,
    )
    return str(body["access_token"])


def resolve() -> tuple[str, str]:
    url = current_url()
    token = os.environ.get("GATEWAY_API_TOKEN")
    # Only this gateway's own login: another gateway's token would be refused (invalid_token).
    stored = saved(url)
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
