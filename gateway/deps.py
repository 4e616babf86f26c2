"""What the app holds, typed, and the dependencies through which routes and services read it.

`create_app()` and its lifespan (gateway/app.py) set every attribute of `AppState`, and nothing
else does; everything else reads them through `state_of()` or an alias below, never through an
untyped `request.app.state`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State
from starlette.requests import HTTPConnection

from gateway.clock import Clock
from gateway.places.models import City
from gateway.places.service import get_city
from gateway.settings import Settings
from gateway.signing import KeySeal

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

    from audio.worker import TranscodeWorker
    from gateway.audit.budget import AnonymousBudget
    from gateway.audit.checkpoints import Checkpointer
    from gateway.broadcasts.audio_links import AudioLinks
    from gateway.broadcasts.publisher import Publisher
    from gateway.broadcasts.status_cache import StatusCache
    from gateway.bus import Bus
    from gateway.cap.poller import CapPoller
    from gateway.deliveries.intake import Intake
    from gateway.deliveries.sweeper import Sweeper
    from gateway.devicesec.brokeradmin import BrokerAdmin
    from gateway.fallback.worker import FallbackWorker
    from gateway.live.hub import LiveHub
    from gateway.metrics import Metrics
    from gateway.push.keys import VapidKey
    from gateway.push.worker import PushWorker
    from gateway.residents.crypto import PhoneCipher
    from gateway.schedules.worker import ScheduleWorker
    from gateway.sms.links import ReportLinks
    from gateway.sms.worker import SmsWorker
    from gateway.web.service import PreviewGate


@dataclass(frozen=True)
class Runtime:
    """What services need from the app beyond the session: passed in, never imported."""

    settings: Settings
    clock: Clock
    worker: TranscodeWorker


class AppState(State):
    """The app's `app.state`, with the type of everything it holds.

    Still a Starlette `State`: tests that build a smaller app set only what its routers read,
    and a test may swap one value (the settings, say) on a running app.
    """

    # Set by create_app(), so present before the lifespan starts.
    settings: Settings
    clock: Clock
    metrics: Metrics
    audio_links: AudioLinks
    jwt_key: bytes
    audit_budget: AnonymousBudget
    phone_cipher: PhoneCipher
    # Set when the replica begins to stop: open event streams end instead of holding the stop.
    stopping: asyncio.Event

    # Set by the lifespan.
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    city_id: int
    status_cache: StatusCache
    key_seal: KeySeal
    broker_admin: BrokerAdmin | None  # None when the gateway does not manage the broker
    bus: Bus
    publisher: Publisher
    intake: Intake
    sweeper: Sweeper
    runtime: Runtime
    preview_gate: PreviewGate
    scheduler: ScheduleWorker
    cap_poller: CapPoller
    live: LiveHub
    checkpointer: Checkpointer | None  # None on a replica without background workers
    sms_links: ReportLinks | None  # None when this gateway sends no SMS
    sms_worker: SmsWorker | None
    push_key: VapidKey | None  # None when this gateway sends no push
    push_worker: PushWorker | None
    fallback_worker: FallbackWorker

    # Loaded at the first broker hook (gateway/devicesec/broker_hooks.py), then kept.
    broker_hook_secret: bytes


def state_of(connection: HTTPConnection) -> AppState:
    """The state of the app serving this request or WebSocket."""
    return cast(AppState, connection.app.state)


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # The request owns the transaction: commit before the response is sent, so a failed commit
    # is an error response, never a 201 the client already holds.
    async with state_of(request).sessions() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        else:
            await session.commit()


def _settings(request: Request) -> Settings:
    return state_of(request).settings


def _now(request: Request) -> datetime:
    return state_of(request).clock.now()


def _runtime(request: Request) -> Runtime:
    return state_of(request).runtime


def _key_seal(request: Request) -> KeySeal:
    return state_of(request).key_seal


SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(_settings)]
NowDep = Annotated[datetime, Depends(_now)]
RuntimeDep = Annotated[Runtime, Depends(_runtime)]
SealDep = Annotated[KeySeal, Depends(_key_seal)]


async def _city(request: Request, session: SessionDep) -> City:
    return await get_city(session, state_of(request).settings.city_code)


CityDep = Annotated[City, Depends(_city)]
