"""The process-pool worker: errors cross intact, stuck jobs are killed, the loop stays free."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from audio import errors
from audio.errors import AudioError, AudioWorkerFailed, TranscodeTimeout, UnsupportedAudio
from audio.pipeline import AudioOptions
from audio.worker import TranscodeWorker
from tests import media
from tests.audio import jobs

ALL_ERRORS = [
    cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, AudioError)
]


@pytest.fixture
async def worker() -> AsyncIterator[TranscodeWorker]:
    async with TranscodeWorker(AudioOptions(), max_workers=2, timeout_s=20.0) as running:
        await running.start()
        yield running


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_every_audio_error_pickles_with_its_class_and_detail(cls: type[AudioError]) -> None:
    original = cls("상세 / detail")

    copy = pickle.loads(pickle.dumps(original))

    assert type(copy) is cls
    assert (copy.code, copy.status, copy.detail) == (cls.code, cls.status, "상세 / detail")
    assert copy.to_dict() == {"error": cls.code, "detail": "상세 / detail"}


def test_error_codes_are_unique_and_statuses_are_http() -> None:
    codes = [cls.code for cls in ALL_ERRORS]
    assert len(codes) == len(set(codes))
    assert all(cls.status in (413, 422, 503) for cls in ALL_ERRORS)
    assert all(cls.message_ko and cls.message_en for cls in ALL_ERRORS)


async def test_errors_raised_in_the_worker_arrive_as_themselves(worker: TranscodeWorker) -> None:
    with pytest.raises(errors.CorruptAudio) as raised:
        await worker.run(jobs.raise_audio_error, "CorruptAudio", "깨짐 / broken")

    assert raised.value.detail == "깨짐 / broken"


async def test_transcode_and_probe_run_in_the_worker(
    worker: TranscodeWorker, recordings: dict[str, Path], tmp_path: Path
) -> None:
    result = await worker.transcode(recordings["m4a"], category="disaster", codecs=("opus",))
    info = await worker.probe(recordings["3gp-amrnb"])

    assert set(result.variants) == {"opus"}
    assert result.duration_ms > 3000
    assert info.codec == "amr_nb"
    with pytest.raises(UnsupportedAudio):
        await worker.transcode(media.make_hls_playlist(tmp_path / "x.mp3"), category="disaster")


async def test_concurrent_transcodes_all_complete(
    worker: TranscodeWorker, recordings: dict[str, Path]
) -> None:
    kinds = ["m4a", "mp3", "webm-opus", "wav-mulaw", "flac", "3gp-amrnb"]

    results = await asyncio.gather(
        *(worker.transcode(recordings[kind], category="village_notice") for kind in kinds)
    )

    assert all(set(r.variants) == {"opus", "mp3"} for r in results)


async def test_event_loop_keeps_running_while_a_job_blocks(worker: TranscodeWorker) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    await worker.run(jobs.sleep_then_pid, 0.5)
    ticker.cancel()

    assert ticks >= 5


async def test_a_stuck_job_times_out_and_its_process_is_replaced() -> None:
    async with TranscodeWorker(max_workers=1, timeout_s=1.0) as worker:
        await worker.start()
        before = await worker.run(jobs.pid)

        with pytest.raises(TranscodeTimeout) as raised:
            await worker.run(jobs.sleep_then_pid, 60.0)
        after = await worker.run(jobs.pid)

    assert (raised.value.code, raised.value.status) == ("audio_timeout", 422)
    assert after != before


async def test_a_crashed_worker_fails_the_job_and_is_restarted() -> None:
    async with TranscodeWorker(max_workers=1, timeout_s=20.0) as worker:
        with pytest.raises(AudioWorkerFailed) as raised:
            await worker.run(jobs.die)
        assert await worker.run(jobs.pid) > 0

    assert (raised.value.code, raised.value.status) == ("audio_worker_failed", 503)


async def test_workers_cap_their_memory() -> None:
    async with TranscodeWorker(timeout_s=20.0, memory_limit_bytes=256 * 1024 * 1024) as worker:
        limit = await worker.run(jobs.address_space_limit)
        with pytest.raises(AudioWorkerFailed, match="memory"):
            await worker.run(jobs.allocate, 2 * 1024 * 1024 * 1024)
        assert await worker.run(jobs.allocate, 1024) == 1024

    assert 0 < limit < 4 * 1024 * 1024 * 1024


async def test_a_cancelled_caller_frees_the_worker() -> None:
    async with TranscodeWorker(max_workers=1, timeout_s=30.0) as worker:
        await worker.start()
        job = asyncio.create_task(worker.run(jobs.sleep_then_pid, 60.0))
        await asyncio.sleep(0.3)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

        assert await worker.run(jobs.pid) > 0


async def test_a_closed_worker_refuses_jobs() -> None:
    worker = TranscodeWorker()
    await worker.close()

    with pytest.raises(AudioWorkerFailed):
        await worker.run(jobs.pid)
