"""Where the CLI finds the gateway and its token: environment first, then the saved login."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

DEFAULT_URL = "http://127.0.0.1:8000"


def path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "maeul" / "credentials.json"


def save(url: str, token: str) -> Path:
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_suffix(".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(json.dumps({"url": url, "token": token}))
    tmp.replace(target)
    return target


def resolve() -> tuple[str, str]:
    url = os.environ.get("GATEWAY_URL")
    token = os.environ.get("GATEWAY_API_TOKEN")
    saved: dict[str, str] = {}
    if path().exists():
        try:
            saved = json.loads(path().read_text())
        except (OSError, ValueError):
            saved = {}
    url = url or saved.get("url") or DEFAULT_URL
    token = token or saved.get("token")
    if not token:
        typer.echo(
            "게이트웨이 토큰이 없습니다. `make run`을 먼저 실행하거나 "
            "GATEWAY_API_TOKEN을 지정하세요. / "
            "No gateway token: run `make run` first or set GATEWAY_API_TOKEN.",
            err=True,
        )
        raise typer.Exit(2)
    return url.rstrip("/"), token
