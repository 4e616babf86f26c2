"""What the live board reads: the event stream's detail, and the facts that tell it a speaker has
stopped answering (checked against the pages' own rule, run in Chromium)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.bus import Incoming
from gateway.web.router import STATIC
from tests.flow.conftest import Stack, proof_of
from tests.media import make_recording
from tests.support.chromium import CHROMIUM_ARGS, require_chromium
from wire import contract
from wire.contract import AckStatus


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = make_recording(tmp_path_factory.mktemp("rec") / "notice.m4a", "m4a", seconds=2.0)
    return path.read_bytes()


def _put(stack: Stack, topic: str, payload: bytes) -> None:
    stack.bus.incoming.put_nowait(Incoming(topic, payload))


def _ack(stack: Stack, command: contract.Command, speaker: str, status: AckStatus) -> None:
    at_ms = int(stack.clock.now().timestamp() * 1000)
    ack = contract.Ack(
        command_id=command.id,
        broadcast_id=command.broadcast_id,
        speaker=speaker,
        status=status,
        at_ms=at_ms,
        **(proof_of(command) if status is AckStatus.PLAYED else {}),
    )
    _put(stack, contract.ack_topic(stack.settings.city_code, speaker), contract.encode_ack(ack))


def _presence(stack: Stack, speaker: str, status: str) -> None:
    at_ms = int(stack.clock.now().timestamp() * 1000)
    message = contract.Presence(speaker=speaker, status=status, at_ms=at_ms)  # type: ignore[arg-type]
    payload = contract.encode_presence(message)
    _put(stack, contract.presence_topic(stack.settings.city_code, speaker), payload)


async def _start(stack: Stack, recording: bytes) -> tuple[str, contract.Command, list[str]]:
    fleet = (await stack.client.get("/api/v1/speakers", params={"limit": 1000})).json()["items"]
    codes = [s["code"] for s in fleet]
    for code in codes:
        _presence(stack, code, "online")
    await stack.deliver()
    response = await stack.client.post(
        "/api/v1/broadcasts",
        data={"category": "administrative", "all_villages": "true", "expires_in_s": "3600"},
        files={"file": ("notice.m4a", recording, "audio/mp4")},
    )
    assert response.status_code == 201, response.text
    await stack.publish_pending()
    [(_, payload, _, _)] = stack.bus.published
    return response.json()["id"], contract.decode_command(payload), codes


async def _detail(stack: Stack, broadcast_id: str) -> dict[str, Any]:
    response = await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _speaker(detail: dict[str, Any], code: str) -> dict[str, Any]:
    [found] = [s for v in detail["village_deliveries"] for s in v["speakers"] if s["code"] == code]
    return found


async def _sweep_after(stack: Stack, seconds: float, codes: list[str]) -> None:
    """Let `seconds` pass (every speaker still sends its heartbeat), then sweep, and publish the
    asks once their retry back-off has passed."""
    stack.clock.advance(seconds)
    for code in codes:
        _presence(stack, code, "heartbeat")
    await stack.deliver()
    await stack.app.state.sweeper.sweep_once()
    stack.clock.advance(stack.settings.retry_backoff_s)
    await stack.publish_pending()


async def test_the_event_stream_pushes_the_detail_the_board_draws(
    stack: Stack, recording: bytes
) -> None:
    broadcast_id, command, codes = await _start(stack, recording)
    for code in codes:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()
    response = await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}/events?detail=true")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = [
        json.loads(line[len("data: ") :])
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    assert events, response.text
    last = events[-1]
    assert last["state"] == "completed"
    assert {s["state"] for v in last["village_deliveries"] for s in v["speakers"]} == {"played"}
    assert last == await _detail(stack, broadcast_id), "the same body as GET ?detail=true"

    plain = await stack.client.get(f"/api/v1/broadcasts/{broadcast_id}/events")
    assert "village_deliveries" not in plain.text, "the summary alone by default"


@pytest.fixture
def chromium() -> str:
    return require_chromium()


async def _chromium_rule(chromium: str, details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pages' own rule (maeul.js) applied to each detail, in Chromium."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.add_script_tag(path=str(STATIC / "js" / "maeul.js"))
            result: list[dict[str, Any]] = await page.evaluate(
                """(details) => details.map((d) => ({
                    silence: silence(d),
                    tiles: d.village_deliveries.map((v) => villageState(v)),
                    since: silence(d) && howLong(silence(d).since, silence(d).since + 40500),
                }))""",
                details,
            )
            return result
        finally:
            await browser.close()


async def test_a_speaker_the_gateway_had_to_ask_again_shows_as_not_answering(
    stack: Stack, recording: bytes, chromium: str
) -> None:
    broadcast_id, command, codes = await _start(stack, recording)
    silent = codes[0]
    for code in codes[1:]:
        _ack(stack, command, code, AckStatus.PLAYED)
    await stack.deliver()
    details = [await _detail(stack, broadcast_id)]
    # Sent once, and the ack not yet due: waiting, not silent.
    assert (_speaker(details[0], silent)["state"], _speaker(details[0], silent)["attempts"]) == (
        "sent",
        1,
    )

    # The ack deadline passes: the gateway asks again, and counts the unanswered ask.
    await _sweep_after(stack, stack.settings.ack_timeout_s + 1, codes)
    details.append(await _detail(stack, broadcast_id))
    assert (_speaker(details[1], silent)["state"], _speaker(details[1], silent)["attempts"]) == (
        "sent",
        2,
    )

    # It answers: the count starts again.
    _ack(stack, command, silent, AckStatus.RECEIVED)
    await stack.deliver()
    details.append(await _detail(stack, broadcast_id))
    assert (_speaker(details[2], silent)["state"], _speaker(details[2], silent)["attempts"]) == (
        "received",
        0,
    )

    # Then it falls silent: its message should long have ended. Asked once (a speaker busy
    # with a long queue answers that), it is waited for; asked twice, it is not answering.
    await _sweep_after(stack, 600, codes)
    details.append(await _detail(stack, broadcast_id))
    assert (_speaker(details[3], silent)["state"], _speaker(details[3], silent)["attempts"]) == (
        "received",
        1,
    )
    await _sweep_after(stack, 600, codes)
    details.append(await _detail(stack, broadcast_id))
    assert (_speaker(details[4], silent)["state"], _speaker(details[4], silent)["attempts"]) == (
        "received",
        2,
    )

    # The report's "시도 횟수" counts every send, which no answer resets: a speaker that played
    # after one send shows 1, the silent one each of its four sends.
    assert [_speaker(d, silent)["sends"] for d in details] == [1, 2, 2, 3, 4]
    played = [_speaker(details[-1], code) for code in codes[1:]]
    assert {(s["state"], s["sends"]) for s in played} == {("played", 1)}

    silent_village = next(
        i
        for i, v in enumerate(details[0]["village_deliveries"])
        if any(s["code"] == silent for s in v["speakers"])
    )
    ruled = await _chromium_rule(chromium, details)
    assert [r["silence"] is not None for r in ruled] == [False, True, False, False, True]
    for found in (ruled[1], ruled[4]):
        assert (found["silence"]["speakers"], found["silence"]["villages"]) == (1, 1)
        assert found["since"] == "40초째"
    # The others of its village played: the tile is about the one that does not answer.
    tiles = [r["tiles"][silent_village] for r in ruled]
    assert tiles == ["sent", "unanswered", "received", "received", "unanswered"]
