"""The broadcast event stream: what it reads and when it sends, against a scripted cache."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest
from pydantic import BaseModel

from gateway.broadcasts import events
from gateway.broadcasts.schemas import BroadcastDetail, BroadcastSummary
from gateway.broadcasts.status_cache import Key, StatusCache

BROADCAST = "b" * 32


def _summary(played: int, *, state: str = "in_progress") -> dict[str, Any]:
    return {
        "id": BROADCAST,
        "state": state,
        "category": "administrative",
        "priority": 50,
        "title": None,
        "text": None,
        "created_at": "2026-01-01T00:00:00Z",
        "expires_at": "2026-01-01T01:00:00Z",
        "cancelled_at": None,
        "finished_at": None,
        "duration_ms": 2000,
        "target": {},
        "villages": {"total": 1},
        "speakers": {"total": 2, "played": played, "sent": 2 - played},
    }


def _detail(played: int, attempts: int = 1, **kwargs: Any) -> BroadcastDetail:
    speakers = [
        {
            "speaker_id": i,
            "code": f"s{i}",
            "state": "played" if i < played else "sent",
            "online": True,
            "reason": None,
            "attempts": attempts,
            "sends": attempts,
            "updated_at": "2026-01-01T00:00:00Z",
            "played_at": None,
        }
        for i in range(2)
    ]
    village = {"village_id": 1, "code": "v", "name": "v", "outcome": "in_progress"}
    return BroadcastDetail.model_validate(
        {**_summary(played, **kwargs), "village_deliveries": [{**village, "speakers": speakers}]}
    )


class Script:
    """Stands for the status cache: each poll takes the next summary and, when read, the next
    detail (the last one repeats); counts the detail reads."""

    def __init__(self, summaries: list[BroadcastSummary], details: list[BroadcastDetail]) -> None:
        self.summaries = summaries
        self.details = details
        self.detail_reads = 0
        self.polls = 0

    async def get(self, key: Key, load: Callable[[], Awaitable[BaseModel]]) -> BaseModel:
        if key[2]:
            value: BaseModel = self.details[min(self.detail_reads, len(self.details) - 1)]
            self.detail_reads += 1
            return value
        self.polls += 1
        return self.summaries[min(self.polls - 1, len(self.summaries) - 1)]

    def serialized(self, key: Key, value: BaseModel) -> str:
        return value.model_dump_json()


async def _run(
    script: Script,
    polls: int,
    *,
    detail: bool,
    interval_s: float = 0,
    stopping: asyncio.Event | None = None,
) -> list[Any]:
    async def gone() -> bool:
        return script.polls >= polls

    sent = []
    async for chunk in events.follow(
        cast(StatusCache, script),
        cast(Any, None),
        1,
        BROADCAST,
        detail=detail,
        interval_s=interval_s,
        gone=gone,
        stopping=stopping or asyncio.Event(),
    ):
        if chunk.startswith("event: summary"):
            sent.append(json.loads(chunk.split("data: ", 1)[1]))
    return sent


def _s(played: int, **kwargs: Any) -> BroadcastSummary:
    return BroadcastSummary.model_validate(_summary(played, **kwargs))


async def test_a_detail_behind_the_summary_is_read_again_until_it_catches_up() -> None:
    # The summary says one played; the cached detail is a refresh behind, then catches up.
    script = Script([_s(0), _s(1)], [_detail(0), _detail(0), _detail(0), _detail(1)])
    sent = await _run(script, 6, detail=True)
    assert [[s["state"] for s in e["village_deliveries"][0]["speakers"]] for e in sent] == [
        ["sent", "sent"],
        ["played", "sent"],
    ]
    assert script.detail_reads == 4, "read until it agreed with the summary, then no more"


async def test_a_quiet_broadcast_reads_its_detail_only_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing counted changes, but the gateway asked a speaker again: the stream still tells.
    monkeypatch.setattr(events, "DETAIL_REFRESH_S", 0.05)
    script = Script([_s(0)], [_detail(0), _detail(0, attempts=2)])
    sent = await _run(script, 8, detail=True, interval_s=0.01)
    assert [e["village_deliveries"][0]["speakers"][0]["attempts"] for e in sent] == [1, 2]
    assert 2 <= script.detail_reads < 8


async def test_the_stream_ends_with_the_final_state_and_sends_the_summary_by_default() -> None:
    script = Script([_s(0), _s(0), _s(2, state="completed"), _s(2)], [_detail(0)])
    sent = await _run(script, 10, detail=False)
    assert [(e["state"], e["speakers"]["played"]) for e in sent] == [
        ("in_progress", 0),
        ("completed", 2),
    ]
    assert script.polls == 3
    assert script.detail_reads == 0
    assert "village_deliveries" not in sent[0]


async def test_a_stopping_replica_ends_its_streams_at_once() -> None:
    # Long polls and a broadcast that runs for ever: only the stop can end this stream.
    stopping = asyncio.Event()
    script = Script([_s(0), _s(1)], [_detail(0)])

    async def stop_after_the_first_event() -> list[Any]:
        async with asyncio.timeout(60):  # a bound so a broken stream ends the test
            task = asyncio.create_task(
                _run(script, 10**9, detail=False, interval_s=3600, stopping=stopping)
            )
            while script.polls == 0:  # noqa: ASYNC110 - waiting for the stream to start
                await asyncio.sleep(0.01)
            stopping.set()
            return await task

    sent = await stop_after_the_first_event()
    assert [e["speakers"]["played"] for e in sent] == [0]
    assert script.polls == 1, "no poll after the stop"
