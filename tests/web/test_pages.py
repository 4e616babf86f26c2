"""The pages' shells, PWA files and spoken preview, served by the gateway without a CDN."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.routing import Mount, Route

from gateway.web.headers import CONTENT_SECURITY_POLICY, DOCS_PATHS
from gateway.web.router import STATIC
from tests.flow.conftest import Stack

PAGES = ["/", "/console", "/phone", "/notices", "/notices/1", "/notices/signup"]


@pytest.mark.parametrize("path", PAGES)
async def test_each_page_is_korean_html_whose_assets_are_all_served(
    stack: Stack, path: str
) -> None:
    response = await stack.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert '<html lang="ko">' in html
    assets = re.findall(r'(?:src|href)="(/(?:static|manifest)[^"#]*)', html)
    for asset in assets:
        served = await stack.client.get(asset)
        assert served.status_code == 200, asset
    assert "http://" not in html, "no external resources"
    assert "https://" not in html, "no external resources"


def test_no_asset_reaches_for_another_origin() -> None:
    for path in STATIC.rglob("*"):
        if path.suffix in {".html", ".css", ".js", ".webmanifest"}:
            text = path.read_text()
            assert not re.search(r"(?:src|href|url)\s*[=(]\s*[\"']?https?://", text), path


async def test_the_phone_page_is_installable(stack: Stack) -> None:
    manifest = await stack.client.get("/manifest.webmanifest")
    assert manifest.status_code == 200
    body = json.loads(manifest.text)
    assert body["start_url"] == "/phone"
    assert body["display"] == "standalone"
    for icon in body["icons"]:
        assert (await stack.client.get(icon["src"])).status_code == 200, icon["src"]
    worker = await stack.client.get("/sw.js")
    assert worker.status_code == 200
    assert worker.headers["service-worker-allowed"] == "/"


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_the_spoken_preview_is_the_gateways_own_voice(stack: Stack) -> None:
    response = await stack.client.post(
        "/api/v1/speech/preview", json={"text": "오늘 오후 3시에 모입니다."}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    assert response.content[:4] == b"RIFF"


async def test_the_spoken_preview_needs_a_sender(stack: Stack) -> None:
    async with httpx.AsyncClient(
        transport=stack.client._transport, base_url="http://gateway"
    ) as anonymous:
        response = await anonymous.post("/api/v1/speech/preview", json={"text": "안녕하세요"})
    assert response.status_code == 401


async def test_unspeakable_text_is_refused_with_its_code(stack: Stack) -> None:
    response = await stack.client.post("/api/v1/speech/preview", json={"text": "!!! ???"})
    assert response.status_code == 422
    assert response.json()["error"] == "unspeakable_text"


@pytest.mark.parametrize("path", PAGES)
async def test_each_page_runs_only_its_own_files(stack: Stack, path: str) -> None:
    response = await stack.client.get(path)
    policy = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_nothing_inline_that_the_policy_would_block() -> None:
    """No inline script, style element, style attribute or event handler attribute, in the
    shells or in the markup the scripts write (the policy would silently drop them)."""
    for path in STATIC.rglob("*"):
        if path.suffix not in {".html", ".js"}:
            continue
        text = path.read_text()
        assert "<style" not in text, path
        assert not re.search(r"\sstyle=", text), path
        assert not re.search(r"\son[a-z]+=[\"']", text), path
        for script in re.findall(r"<script([^>]*)>(.*?)</script>", text, re.S):
            assert 'src="/static/' in script[0], path
            assert not script[1].strip(), path


def _html_files(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in sorted(root.rglob("*.html"))]


async def _html_responses(stack: Stack) -> dict[str, httpx.Response]:
    """Every HTML response the gateway can give: each route outside the API schema (the pages,
    the API's documentation) and every .html file under a static mount."""
    found: dict[str, httpx.Response] = {}
    paths: list[str] = []
    routes: list[tuple[str, object]] = []
    for included in stack.app.routes:
        contexts = getattr(included, "effective_route_contexts", None)
        if contexts is None:
            routes.append((getattr(included, "path", ""), included))
        else:
            routes += [(c.path, c.original_route) for c in contexts()]
    for path, route in routes:
        if isinstance(route, Mount) and isinstance(route.app, StaticFiles):
            paths += [
                f"{route.path}/{name}" for name in _html_files(Path(str(route.app.directory)))
            ]
        elif isinstance(route, Route) and "GET" in (route.methods or ()):
            if isinstance(route, APIRoute) and route.include_in_schema:
                assert "text/html" not in str(route.response_class), path
                continue
            paths.append(re.sub(r"\{[^}]+\}", "1", path))
    for path in paths:
        response = await stack.client.get(path)
        if response.headers.get("content-type", "").startswith("text/html"):
            found[path] = response
    return found


async def test_every_html_response_carries_the_same_security_headers(stack: Stack) -> None:
    responses = await _html_responses(stack)
    assert {"/", "/console", "/talk", "/static/console.html", "/docs"} <= responses.keys()
    for path, response in responses.items():
        assert response.status_code == 200, path
        headers = response.headers
        assert headers["x-frame-options"] == "DENY", path
        assert headers["x-content-type-options"] == "nosniff", path
        assert headers["referrer-policy"] == "same-origin", path
        policy = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy, path
        assert "object-src 'none'" in policy, path
        if path in DOCS_PATHS:
            continue  # FastAPI's own pages: their viewer comes from a CDN (see headers.py)
        assert policy == CONTENT_SECURITY_POLICY, path
