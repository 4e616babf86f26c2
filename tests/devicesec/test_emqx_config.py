"""The shipped EMQX configuration asks exactly what the gateway's hooks answer."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from pydantic import BaseModel

from gateway.app import create_app
from gateway.devicesec import broker_hooks
from gateway.settings import Settings

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "emqx" / "maeul-access.hocon.template"


def _blocks(text: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(url path, headers, body) of each HTTP request the configuration makes."""
    found = []
    for url in re.finditer(r'url = "\$\{MAEUL_GATEWAY_URL\}(/[^"]+)"', text):
        rest = text[url.end() :]
        headers = re.search(r"headers \{(.*?)\n\s*\}", rest, re.S)
        body = re.search(r"body \{(.*?)\n\s*\}", rest, re.S)
        assert headers is not None
        assert body is not None
        pairs = [dict(re.findall(r'"?([\w-]+)"? = "([^"]*)"', b.group(1))) for b in (headers, body)]
        found.append((url.group(1), pairs[0], pairs[1]))
    return found


async def test_the_emqx_configuration_matches_the_hooks(tmp_path: Path) -> None:
    text = TEMPLATE.read_text(encoding="utf-8")
    settings = Settings(environment="test", database_url="sqlite+aiosqlite://", data_dir=tmp_path)
    transport = httpx.ASGITransport(app=create_app(settings))
    models: dict[str, type[BaseModel]] = {
        "/api/v1/broker/hooks/emqx/authenticate": broker_hooks.EmqxAuthentication,
        "/api/v1/broker/hooks/emqx/authorize": broker_hooks.EmqxAuthorization,
    }

    blocks = _blocks(text)
    assert [path for path, _, _ in blocks] == list(models)
    for path, headers, body in blocks:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            answer = await client.post(path, json={})  # the route is there, and wants the secret
        assert answer.json()["error"] == "broker_hook_secret_missing", path
        assert headers[broker_hooks.HEADER.lower()] == "${MAEUL_BROKER_HOOK_SECRET}"
        assert set(body) == set(models[path].model_fields), path
    authorize = blocks[1][2]
    assert authorize["stamp"] == f"${{client_attrs.{broker_hooks.STAMP_ATTRIBUTE}}}"
    # Denied unless the gateway allows; a revocation waits at most a second in EMQX's cache.
    assert re.search(r"^\s*no_match = deny$", text, re.M)
    assert re.search(r"^\s*ttl = 1s$", text, re.M)
    assert "superuser" not in text
