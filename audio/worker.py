"""Running the blocking audio pipeline in bounded worker processes, for the async gateway.

Each slot is a one-process ``ProcessPoolExecutor`` (forkserver or spawn, never fork: the
gateway has threads). A job first takes a free slot (waiting at most ``queue_timeout_s``),
then runs with ``timeout_s``; the clock starts only once the slot's process is up, so the
timeout measures the file, not the queue or a cold start. A job that runs out of time, or
whose caller gives up, gets its process killed and the slot rebuilt, so one stuck decode
never wedges the others. Worker processes cap their own address space (RLIMIT_AS) at start.

Jobs wait in lanes: the waiting line is ordered by priority (higher first; the broadcast
priorities, a preview below them all), then by arrival, so a disaster alert is never queued
behind uploads or previews. ``max_workers`` slots serve every lane; ``urgent_workers`` more
serve only jobs at or above ``urgent_priority``, so an urgent job starts at once even while
previews keep every ordinary slot busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import multiprocessing
import os
import resource
import signal
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import TracebackType
from typing import Final, ParamSpec, TypeVar

from audio.errors import AudioWorkerBusy, AudioWorkerFailed, TranscodeTimeout
from audio.pipeline import CODECS, AudioOptions, ProbeInfo, Transcoded, probe_file, transcode_file
from audio.speech.engine import synthesize_file

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_MEMORY_LIMIT: Final = 1024 * 1024 * 1024
_STARTUP_TIMEOUT_S: Final = 60.0
# A job given no priority (a probe, a test announcement): with the tests, below every real
# broadcast. A spoken preview is below everything: nobody hears it but the person typing.
DEFAULT_PRIORITY: Final = 0
PREVIEW_PRIORITY: Final = -1
ORDINARY_NICENESS: Final = 5


def _init_worker(memory_limit_bytes: int | None, niceness: int = 0) -> None:
    # Ctrl-C belongs to the gateway; it shuts the pool down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if niceness:
        # Ordinary slots yield the CPU to the urgent slots and to the gateway's event loop.
        with contextlib.suppress(OSError):
            os.nice(niceness)
    if memory_limit_bytes is None:
        return
    # The cap is what a job may add to what the process already maps after start-up
    # (Python, numpy, FFmpeg), so it means the same on every machine.
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _mapped_bytes() + memory_limit_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _mapped_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 512 * 1024 * 1024


def _ready() -> int:
    return os.getpid()


class _Slot:
    """One worker process, rebuilt from scratch when it is killed."""

    def __init__(self, factory: Callable[[], ProcessPoolExecutor], *, reserved: bool) -> None:
        self._factory = factory
        self.pool = factory()
        self.started = False
        # Reserved slots serve only urgent jobs.
        self.reserved = reserved

    def processes(self) -> list[BaseProcess]:
        return list((getattr(self.pool, "_processes", None) or {}).values())

    def recycle(self) -> None:
        """Kill the process (whatever it is doing) and start over with a fresh pool."""
        victims = self.processes()
        for process in victims:
            if process.is_alive():
                process.kill()
        # The old pool's manager thread reaps the killed process on its own.
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._factory()
        self.started = False


@dataclass(order=True)
class _Waiter:
    """A job waiting for a slot: the highest priority first, then the earliest."""

    rank: tuple[int, int]
    urgent: bool = field(compare=False)
    future: asyncio.Future[_Slot] = field(compare=False)


class TranscodeWorker:
    """Async front of the audio pipeline: ``await worker.transcode(path, category=...)``."""

    def __init__(
        self,
        options: AudioOptions | None = None,
        *,
        max_workers: int = 1,
        urgent_workers: int = 0,
        priorities: Mapping[str, int] | None = None,
        urgent_priority: int | None = None,
        timeout_s: float = 120.0,
        queue_timeout_s: float | None = 300.0,
        memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT,
        start_method: str = "forkserver",
    ) -> None:
        """`priorities` gives a category's lane when a caller names only the category;
        `urgent_priority` is where the reserved `urgent_workers` start serving (None: the
        highest of `priorities`, that is the disaster alert's)."""
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if urgent_workers < 0:
            raise ValueError("urgent_workers must not be negative")
        if start_method == "fork":
            raise ValueError("fork is unsafe in a threaded gateway; use forkserver or spawn")
        if start_method not in multiprocessing.get_all_start_methods():
            start_method = "spawn"
        self.options = options or AudioOptions()
        self.timeout_s = timeout_s
        self.queue_timeout_s = queue_timeout_s
        self.priorities: Mapping[str, int] = dict(priorities or {})
        if urgent_priority is None and self.priorities:
            urgent_priority = max(self.priorities.values())
        self.urgent_priority = urgent_priority
        context = multiprocessing.get_context(start_method)

        def factory(niceness: int) -> Callable[[], ProcessPoolExecutor]:
            return functools.partial(
                ProcessPoolExecutor,
                max_workers=1,
                mp_context=context,
                initializer=_init_worker,
                initargs=(memory_limit_bytes, niceness),
            )

        # With urgent slots, the ordinary ones run a little nicer: an urgent job then gets
        # its share of a machine whose cores the ordinary ones keep busy.
        ordinary = factory(ORDINARY_NICENESS if urgent_workers else 0)
        self._slots = [_Slot(ordinary, reserved=False) for _ in range(max_workers)]
        self._slots += [_Slot(factory(0), reserved=True) for _ in range(urgent_workers)]
        self._idle: list[_Slot] = list(self._slots)
        self._waiting: list[_Waiter] = []
        self._arrivals = itertools.count()
        self._warming: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        """Jobs waiting for a slot now."""
        return len(self._waiting)

    @property
    def busy(self) -> int:
        """Slots running a job now."""
        return len(self._slots) - len(self._idle)

    def priority_of(self, category: str | None) -> int:
        """The lane of a job known only by its broadcast category."""
        if category is None:
            return DEFAULT_PRIORITY
        return self.priorities.get(str(category), DEFAULT_PRIORITY)

    async def transcode(
        self,
        path: Path,
        *,
        category: str,
        codecs: Collection[str] = CODECS,
        spoken_frame: tuple[Path, Path] | None = None,
        priority: int | None = None,
    ) -> Transcoded:
        """Transcode in the lane of `priority` (None: the category's)."""
        return await self.run_at(
            self.priority_of(category) if priority is None else priority,
            transcode_file,
            path,
            category=str(category),
            options=self.options,
            codecs=tuple(codecs),
            spoken_frame=spoken_frame,
        )

    async def speak(
        self,
        text: str,
        path: Path,
        *,
        engine: str,
        repeat: bool = False,
        category: str | None = None,
        priority: int | None = None,
        texts: Mapping[str, str] | None = None,
        languages: Sequence[str] = (),
    ) -> int:
        """Speak `text` (then `languages` from `texts`) into a WAV at `path` in the lane of
        `priority` (None: the category's, or the default lane); returns its length in ms."""
        return await self.run_at(
            self.priority_of(category) if priority is None else priority,
            synthesize_file,
            text,
            str(path),
            engine=engine,
            repeat=repeat,
            texts=dict(texts or {}),
            languages=tuple(languages),
        )

    async def probe(self, path: Path, *, measure: bool = False) -> ProbeInfo:
        return await self.run(probe_file, path, self.options, measure=measure)

    async def start(self) -> None:
        """Start every worker process now rather than on first use."""
        await asyncio.gather(*(self._ensure_started(slot) for slot in self._slots))

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a picklable blocking function in a worker, in the default lane."""
        return await self.run_at(DEFAULT_PRIORITY, fn, *args, **kwargs)

    async def run_at(
        self, priority: int, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a picklable blocking function in a worker, within the time and memory bounds,
        after every waiting job of a higher priority and before every one of a lower."""
        slot = await self._acquire(priority)
        try:
            await self._ensure_started(slot)
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(slot.pool, functools.partial(fn, *args, **kwargs))
            try:
                return await asyncio.wait_for(future, self.timeout_s)
            except TimeoutError:
                log.warning("audio job %s passed %.0f s; worker killed", _name(fn), self.timeout_s)
                slot.recycle()
                raise TranscodeTimeout(
                    f"오디오 처리가 {self.timeout_s:.0f}초 안에 끝나지 않았습니다. / "
                    f"Processing the audio did not finish within {self.timeout_s:.0f} s."
                ) from None
            except asyncio.CancelledError:
                # Nobody waits for the result any more; free the process for the next job.
                slot.recycle()
                raise
            except BrokenProcessPool:
                log.error("audio worker died during %s; restarting it", _name(fn))
                slot.recycle()
                raise AudioWorkerFailed(
                    "오디오 변환 프로세스가 비정상 종료되었습니다. / "
                    "The audio worker process died while converting."
                ) from None
            except MemoryError:
                slot.recycle()
                raise AudioWorkerFailed(
                    "오디오 변환에 필요한 메모리가 제한을 넘었습니다. / "
                    "Converting the audio needed more memory than allowed."
                ) from None
        finally:
            self._release(slot)

    def _is_urgent(self, priority: int) -> bool:
        return self.urgent_priority is not None and priority >= self.urgent_priority

    async def _acquire(self, priority: int) -> _Slot:
        self._check_open()
        self._warm_reserve()
        urgent = self._is_urgent(priority)
        # An idle ordinary slot means nobody waits; an idle reserved slot means no urgent job
        # waits (a release hands it to one at once), so taking it skips nobody's turn.
        slot = self._take_idle(urgent)
        if slot is None:
            slot = await self._wait_for_slot(priority, urgent)
        if self._closed:
            self._release(slot)
            self._check_open()
        return slot

    def _take_idle(self, urgent: bool) -> _Slot | None:
        # An urgent job takes its own (unniced) slot first, and an ordinary one if those are
        # busy: a second alert at once is not kept waiting while ordinary slots sit idle.
        for reserved in (True, False) if urgent else (False,):
            for slot in self._idle:
                if slot.reserved is reserved:
                    self._idle.remove(slot)
                    return slot
        return None

    async def _wait_for_slot(self, priority: int, urgent: bool) -> _Slot:
        waiter = _Waiter(
            (-priority, next(self._arrivals)), urgent, asyncio.get_running_loop().create_future()
        )
        heapq.heappush(self._waiting, waiter)
        try:
            done, _ = await asyncio.wait({waiter.future}, timeout=self.queue_timeout_s)
        except asyncio.CancelledError:
            self._give_up(waiter)
            raise
        if not done:
            self._give_up(waiter)
            raise AudioWorkerBusy(
                f"{self.queue_timeout_s:.0f}초 동안 빈 변환기가 없었습니다. / "
                f"No audio worker became free within {self.queue_timeout_s:.0f} s."
            )
        return waiter.future.result()

    def _give_up(self, waiter: _Waiter) -> None:
        """The caller stopped waiting: leave the line, or pass on a slot handed over meanwhile."""
        if waiter in self._waiting:
            self._waiting.remove(waiter)
            heapq.heapify(self._waiting)
        if waiter.future.done() and not waiter.future.cancelled():
            if waiter.future.exception() is None:
                self._release(waiter.future.result())
        else:
            waiter.future.cancel()

    def _check_open(self) -> None:
        if self._closed:
            raise AudioWorkerFailed(
                "오디오 변환기가 종료되었습니다. / The audio converter has been shut down."
            )

    def _release(self, slot: _Slot) -> None:
        """Hand the slot to the first waiting job that may use it, or make it idle."""
        if self._waiting and (self._waiting[0].urgent or not slot.reserved):
            waiter = heapq.heappop(self._waiting)
            waiter.future.set_result(slot)
            return
        self._idle.append(slot)

    def _warm_reserve(self) -> None:
        """Start the reserved processes with the first job, so the first urgent job under
        load does not wait for a cold start; an idle gateway starts none."""
        if self._warming is not None:
            return
        reserve = [slot for slot in self._slots if slot.reserved]
        if reserve:

            async def warm() -> None:
                with contextlib.suppress(AudioWorkerFailed):
                    await asyncio.gather(*(self._ensure_started(slot) for slot in reserve))

            self._warming = asyncio.create_task(warm(), name="audio-warm-reserve")

    async def _ensure_started(self, slot: _Slot) -> None:
        if slot.started:
            return
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(slot.pool, _ready), _STARTUP_TIMEOUT_S)
        except (TimeoutError, BrokenProcessPool, OSError) as exc:
            slot.recycle()
            raise AudioWorkerFailed(
                "오디오 변환 프로세스를 시작하지 못했습니다. / "
                f"The audio worker process could not start ({type(exc).__name__})."
            ) from None
        slot.started = True

    async def close(self, *, grace_s: float = 5.0) -> None:
        """Stop taking jobs, let running ones finish for `grace_s`, then kill the rest."""
        if self._closed:
            return
        self._closed = True
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warming
        while self._waiting:
            waiter = heapq.heappop(self._waiting)
            if not waiter.future.done():
                waiter.future.set_exception(
                    AudioWorkerFailed(
                        "오디오 변환기가 종료되었습니다. / The audio converter has been shut down."
                    )
                )
        processes = [p for slot in self._slots for p in slot.processes()]
        for slot in self._slots:
            slot.pool.shutdown(wait=False, cancel_futures=True)

        def join_all() -> None:
            for process in processes:
                process.join(grace_s)
                if process.is_alive():
                    process.kill()
                    process.join(1.0)

        await asyncio.to_thread(join_all)

    async def __aenter__(self) -> TranscodeWorker:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _name(fn: Callable[..., object]) -> str:
    return getattr(fn, "__qualname__", repr(fn))
