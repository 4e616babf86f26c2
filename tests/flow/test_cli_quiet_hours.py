"""`maeul broadcast` in quiet hours (the README's first example at night): it says the send was
deferred, until when, and how to send now, in Korean and in its JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from maeul import broadcasting
from maeul.cli import app as cli
from tests.flow.conftest import Stack
from tests.flow.test_broadcast_flow import recording
from tests.flow.test_quiet_hours import _districts
from tests.flow.test_schedules import _aware, local, move_to

__all__ = ["recording"]  # the module-scoped fixture, shared


class _ToTheStack(httpx.BaseTransport):
    """The CLI's blocking client, answered by the in-process gateway on the test's own loop
    (the CLI runs in a thread meanwhile)."""

    def __init__(self, stack: Stack, loop: asyncio.AbstractEventLoop) -> None:
        self.stack = stack
        self.loop = loop

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()

        async def ask() -> httpx.Response:
            return await self.stack.client.request(
                request.method, request.url.raw_path.decode(), content=body, headers=request.headers
            )

        answer = asyncio.run_coroutine_threadsafe(ask(), self.loop).result(60)
        headers = [
            (k, v)
            for k, v in answer.headers.items()
            if k.lower() not in ("content-encoding", "content-length")
        ]
        return httpx.Response(answer.status_code, headers=headers, content=answer.content)


async def _maeul(stack: Stack, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    transport = _ToTheStack(stack, asyncio.get_running_loop())
    monkeypatch.setattr(
        broadcasting,
        "api_client",
        lambda: httpx.Client(base_url="http://gateway", transport=transport),
    )
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def test_a_send_deferred_by_quiet_hours_says_until_when_and_how_to_send_now(
    stack: Stack, recording: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    clip = tmp_path / "recording.m4a"
    clip.write_bytes(recording)
    example = ["broadcast", "--file", str(clip), "--all", "--category", "administrative"]
    move_to(stack, local("2026-01-01T22:15"))

    result = await _maeul(stack, monkeypatch, *example, "--wait", "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert (body["deferred"], body["reason"]) == (True, "quiet_hours")
    assert _aware(body["until"]) == local("2026-01-02T07:00")
    assert "--category disaster" in body["how_to_send_now"]
    assert "GATEWAY_QUIET_HOURS=off make run" in body["how_to_send_now"]
    assert f"maeul schedule cancel {body['schedule_id']}" in body["how_to_send_now"]

    # The same recording to the same villages while the first waits: asked about first.
    result = await _maeul(stack, monkeypatch, *example)
    assert result.exit_code == 2, result.output
    assert "같은 방송이 이미 방송 금지 시간이 끝나기를 기다리고 있습니다" in result.output
    assert "--yes" in result.output
    assert body["schedule_id"] in result.output
    result = await _maeul(stack, monkeypatch, *example, "--yes")
    assert result.exit_code == 0, result.output
    said = result.stdout
    assert "방송 금지 시간이라 바로 보내지 않았습니다" in said
    assert "2026-01-02 07:00에 보내도록 예약했습니다" in said
    assert "재난 경보는 방송 금지 시간에도 바로 나갑니다" in said
    assert "GATEWAY_QUIET_HOURS=off make run" in said

    # What it offers does send now: a disaster alert is never held.
    disaster = ["broadcast", "--file", str(clip), "--all", "--category", "disaster", "--json"]
    result = await _maeul(stack, monkeypatch, *disaster)
    assert result.exit_code == 0, result.output
    sent = json.loads(result.stdout)
    assert "deferred" not in sent
    assert sent["state"] in ("queued", "in_progress"), sent

    # Out of quiet hours the same example is sent, not deferred.
    move_to(stack, local("2026-01-02T09:00"))
    # (the held ones have not gone out yet here: sending the same again is asked about)
    result = await _maeul(stack, monkeypatch, *example, "--json", "--yes")
    assert result.exit_code == 0, result.output
    assert "deferred" not in json.loads(result.stdout)


async def test_a_send_held_by_a_districts_own_window_says_how_to_lift_that_one(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    first, _ = await _districts(stack)
    move_to(stack, local("2026-01-03T09:00"))  # the city's window is not in force
    lifted = await stack.client.put(
        f"/api/v1/quiet-hours/districts/{first}", json={"window": "08:00-10:00"}
    )
    assert lifted.status_code == 200, lifted.text
    text = ["--text", "오늘 오전 열 시에 마을 회관에서 회의가 있습니다"]
    example = ["broadcast", *text, "--district", str(first), "--category", "administrative"]

    result = await _maeul(stack, monkeypatch, *example, "--json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["deferred"] is True
    advice = body["how_to_send_now"]
    assert "GATEWAY_QUIET_HOURS=off" not in advice
    assert "/api/v1/quiet-hours/districts/{id}" in advice
    assert '{"window": "..."}' in advice
    assert "--category disaster" in advice
    assert f"maeul schedule cancel {body['schedule_id']}" in advice

    # The same text again: asked first; with --yes it is held a second time.
    result = await _maeul(stack, monkeypatch, *example)
    assert result.exit_code == 2, result.output
    assert "The same send is already waiting" in result.output
    result = await _maeul(stack, monkeypatch, *example, "--allow-duplicate")
    assert result.exit_code == 0, result.output
    assert "읍·면·동의 방송 금지 시간이 막았습니다" in result.stdout
    assert "GATEWAY_QUIET_HOURS=off" not in result.stdout
