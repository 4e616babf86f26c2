"""The worker's lanes: waiting jobs start by priority, and urgent work has slots of its own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from audio.worker import PREVIEW_PRIORITY, TranscodeWorker
from tests.audio import jobs

PRIORITIES = {"village_notice": 10, "administrative": 20, "crime_prevention": 30, "disaster": 40}
# A safety net for a broken worker only: nothing here asserts how long anything takes.
HANG_S = 60.0


class Held:
    """Jobs that note when they start and block until the test releases them all."""

    def __init__(self, folder: Path) -> None:
        self.gate = folder / "release"
        self.log = folder / "started.log"
        self.log.touch()

    def job(self, worker: TranscodeWorker, priority: int, label: str) -> asyncio.Task[str]:
        return asyncio.create_task(
            worker.run_at(priority, jobs.wait_for_file, str(self.gate), label, str(self.log))
        )

    def started(self) -> list[str]:
        return self.log.read_text().split()

    def release(self) -> None:
        self.gate.touch()


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_S):
        while not condition():  # noqa: ASYNC110 - polling another process's progress
            await asyncio.sleep(0.02)


async def settled(*tasks: Awaitable[object]) -> None:
    async with asyncio.timeout(HANG_S):
        await asyncio.gather(*tasks)


async def test_a_disaster_runs_while_previews_fill_every_ordinary_slot(
    tmp_path: Path, recordings: dict[str, Path]
) -> None:
    held = Held(tmp_path)
    async with TranscodeWorker(
        max_workers=1, urgent_workers=1, priorities=PRIORITIES, timeout_s=HANG_S
    ) as worker:
        running = held.job(worker, PREVIEW_PRIORITY, "preview-1")
        await until(lambda: held.started() == ["preview-1"])
        queued = [held.job(worker, PREVIEW_PRIORITY, f"preview-{n}") for n in (2, 3, 4)]
        upload = asyncio.create_task(worker.transcode(recordings["m4a"], category="administrative"))
        await until(lambda: worker.queued == 4)

        # Named only by its category, as the broadcast service names it.
        alert = await asyncio.wait_for(
            worker.transcode(recordings["m4a"], category="disaster", codecs=("opus",)), HANG_S
        )

        assert set(alert.variants) == {"opus"}
        assert held.started() == ["preview-1"], "the previews still wait"
        assert worker.queued == 4
        held.release()
        await settled(running, upload, *queued)


async def test_waiting_jobs_start_by_priority_then_arrival(tmp_path: Path) -> None:
    held = Held(tmp_path)
    async with TranscodeWorker(max_workers=1, timeout_s=HANG_S) as worker:
        first = held.job(worker, PREVIEW_PRIORITY, "first")
        await until(lambda: held.started() == ["first"])
        waiting = [
            held.job(worker, PREVIEW_PRIORITY, "preview-a"),
            held.job(worker, 10, "notice"),
            held.job(worker, PREVIEW_PRIORITY, "preview-b"),
            held.job(worker, 40, "disaster"),
            held.job(worker, 20, "administrative"),
        ]
        await until(lambda: worker.queued == len(waiting))

        held.release()
        await settled(first, *waiting)

    assert held.started() == [
        "first",
        "disaster",
        "administrative",
        "notice",
        "preview-a",
        "preview-b",
    ]


async def test_reserved_slots_never_serve_ordinary_jobs(tmp_path: Path) -> None:
    held = Held(tmp_path)
    async with TranscodeWorker(
        max_workers=1, urgent_workers=1, urgent_priority=40, timeout_s=HANG_S
    ) as worker:
        jobs_ = [held.job(worker, 30, "crime"), held.job(worker, 30, "crime-2")]
        await until(lambda: held.started() == ["crime"] and worker.queued == 1)

        assert worker.busy == 1, "the reserved slot stays free"
        held.release()
        await settled(*jobs_)


async def test_a_caller_that_gives_up_waiting_leaves_the_line(tmp_path: Path) -> None:
    held = Held(tmp_path)
    async with TranscodeWorker(max_workers=1, timeout_s=HANG_S) as worker:
        running = held.job(worker, 10, "running")
        await until(lambda: held.started() == ["running"])
        abandoned = held.job(worker, 10, "abandoned")
        kept = held.job(worker, 10, "kept")
        await until(lambda: worker.queued == 2)

        abandoned.cancel()
        with pytest.raises(asyncio.CancelledError):
            await abandoned
        held.release()
        await settled(running, kept)

    assert held.started() == ["running", "kept"]


async def test_ordinary_slots_yield_the_cpu_to_urgent_ones(tmp_path: Path) -> None:
    held = Held(tmp_path)
    async with TranscodeWorker(
        max_workers=1, urgent_workers=1, urgent_priority=40, timeout_s=HANG_S
    ) as worker:
        ordinary = await worker.run(jobs.niceness)
        running = held.job(worker, 10, "upload")
        await until(lambda: held.started() == ["upload"])
        urgent = await asyncio.wait_for(worker.run_at(40, jobs.niceness), HANG_S)
        held.release()
        await settled(running)

    assert ordinary > urgent
