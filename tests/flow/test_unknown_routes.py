"""Starlette's own answers (no such route, wrong method) carry a stable error code."""

from __future__ import annotations

from tests.flow.conftest import Stack


async def test_an_unknown_route_is_not_found_with_a_code(stack: Stack) -> None:
    response = await stack.client.get("/api/v1/nonexistent")
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "not_found"
    assert "없는 주소" in body["detail"]
    assert "No such resource" in body["detail"]


async def test_a_wrong_method_is_refused_with_a_code(stack: Stack) -> None:
    response = await stack.client.delete("/healthz")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]
