"""The application factory: settings, database, bus, clock and workers enter here only."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Final

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy import select, text

from audio.pipeline import AudioOptions
from audio.worker import TranscodeWorker
from gateway.allocator import HeapTrimmer
from gateway.approvals.router import router as approvals_router
from gateway.audit.budget import AnonymousBudget
from gateway.audit.checkpoints import Checkpointer
from gateway.audit.router import router as audit_router
from gateway.auth import role_categories, signing_key
from gateway.broadcasts.audio_links import AudioLinks
from gateway.broadcasts.models import Publication
from gateway.broadcasts.publisher import Publisher
from gateway.broadcasts.router import audio_router
from gateway.broadcasts.router import router as broadcasts_router
from gateway.broadcasts.status_cache import StatusCache
from gateway.bus import Bus, MqttBus
from gateway.cap.poller import CapPoller
from gateway.cap.publish_router import router as cap_publish_router
from gateway.cap.router import router as cap_ingest_router
from gateway.clock import Clock, SystemClock
from gateway.datafiles import secure_data_dir
from gateway.db import AfterCommit, create_engine, create_sessions
from gateway.deliveries.intake import DROP_REASONS, Intake
from gateway.deliveries.router import router as deliveries_router
from gateway.deliveries.sweeper import Sweeper
from gateway.deps import AppState, Runtime, state_of
from gateway.devicesec import broker_files
from gateway.devicesec.broker_hooks import router as broker_hooks_router
from gateway.devicesec.brokeradmin import BrokerAdmin, admin_of
from gateway.devicesec.dynsec import BrokerState
from gateway.devicesec.router import router as devicesec_router
from gateway.enrollment.router import router as enrollment_router
from gateway.error_handlers import install_handlers
from gateway.fallback.router import router as fallback_router
from gateway.fallback.worker import FallbackWorker
from gateway.keyfiles import check_secrets, load_secret
from gateway.live.fanout import FakeLiveBus, LiveBus, MqttLiveBus
from gateway.live.hub import LiveHub
from gateway.live.router import pages as live_pages
from gateway.live.router import router as live_router
from gateway.live.settings import LiveSettings
from gateway.logs import RequestIds
from gateway.metrics import CONTENT_TYPE, Metrics, RequestTimer
from gateway.notices.router import router as notices_router
from gateway.officer_alerts.router import router as officer_alerts_router
from gateway.places.models import City
from gateway.places.router import router as places_router
from gateway.provisioning import router as provisioning_router
from gateway.push.keys import KEY_NAME as PUSH_VAPID_KEY
from gateway.push.keys import VapidKey
from gateway.push.router import router as push_router
from gateway.push.sender import WebPushSender
from gateway.push.worker import PushWorker
from gateway.request_hooks import AfterRequest
from gateway.residents.crypto import PhoneCipher
from gateway.residents.router import router as residents_router
from gateway.schedules.router import quiet_router
from gateway.schedules.router import router as schedules_router
from gateway.schedules.worker import ScheduleWorker
from gateway.settings import Settings
from gateway.signing import KeySeal, SigningKeyError, prepare_keys
from gateway.signing_router import router as keys_router
from gateway.sms.links import KEY_NAME as SMS_DLR_KEY
from gateway.sms.links import ReportLinks
from gateway.sms.router import router as sms_router
from gateway.sms.sendsms import KannelSender
from gateway.sms.worker import SmsWorker
from gateway.speakers.router import router as speakers_router
from gateway.templates.router import router as templates_router
from gateway.users.router import router as users_router
from gateway.web.headers import SecurityHeaders
from gateway.web.router import STATIC
from gateway.web.router import pages as web_pages
from gateway.web.router import router as web_router
from gateway.web.service import PreviewGate
from wire import contract

log = logging.getLogger(__name__)

# Secrets every replica must hold (README, "Production"), checked together at start.
STARTUP_SECRETS: Final = ("jwt_secret", "key_encryption_key", "audio_url_key", "phone_key")
# And those of replicas with background workers, which sign the audit checkpoints.
WORKER_SECRETS: Final = ("audit_checkpoint_key",)
# And those of a gateway that sends SMS: signing delivery-report links (its numbers are
# sealed with phone_key, above).
SMS_SECRETS: Final = (SMS_DLR_KEY,)
# And that of a gateway that sends web push: its VAPID key.
PUSH_SECRETS: Final = (PUSH_VAPID_KEY,)

API = "/api/v1"


async def _supervised(run: Callable[[], Awaitable[None]], name: str) -> None:
    """Run a background loop for the app's lifetime: a loop that dies (a bug, not an outage;
    the loops ride those out themselves) is logged and started again, never lost silently."""
    delay = 1.0
    while True:
        try:
            await run()
            log.error("background task %s returned; starting it again", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed; starting it again in %.0fs", name, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 30.0)


def _waker(*workers: SmsWorker | PushWorker | None) -> Callable[[], None] | None:
    """Wakes every running sender after the fallback queued messages."""
    running = [w for w in workers if w is not None]
    if not running:
        return None

    def wake() -> None:
        for worker in running:
            worker.wake.set()

    return wake


async def _ensure_city(state: AppState, settings: Settings) -> int:
    async with state.sessions() as session:
        city = await session.scalar(select(City).where(City.code == settings.city_code))
        if city is None:
            city = City(
                code=settings.city_code,
                name=settings.city_code,
                settings={},
                created_at=state.clock.now(),
            )
            session.add(city)
            await session.commit()
        city_id: int = city.id
        return city_id


def client_ids(settings: Settings) -> tuple[str, str, str]:
    """The client ids of this start of the replica: its bus, its live fan-out, its broker admin.

    New and unguessable at every start, so nobody can take the gateway's sessions over by
    connecting under its client id (a speaker could not anyway: the broker binds each speaker's
    password to the speaker's own client id). The bus keeps its id across reconnections within
    the process, so the broker still resumes its session after a network break.
    """
    base = f"{settings.mqtt_client_prefix}-{settings.replica_id}-{secrets.token_hex(8)}"
    return base, f"{base}-live", f"{base}-admin"


def session_file(settings: Settings) -> Path:
    """Where a replica notes the client id of its bus, for its next start."""
    return settings.data_dir / f"mqtt-session-{settings.replica_id}"


def _remember_session(settings: Settings, client_id: str) -> list[str]:
    """Note this start's bus client id; return the one the previous start noted, whose session
    the bus resumes and ends (a crash leaves it holding a share of the acks)."""
    path = session_file(settings)
    previous: list[str] = []
    with contextlib.suppress(OSError, UnicodeDecodeError):
        previous = [line for line in path.read_text().split() if line]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{client_id}\n")
    except OSError as exc:
        log.warning("could not note the MQTT session in %s: %s", path, exc)
    return previous


def _broker_admin(state: AppState, settings: Settings, client_id: str) -> BrokerAdmin:
    password = load_secret(settings, "broker_admin_password").decode()
    target = settings.mqtt
    own = (
        broker_files.OwnUser(target.username, target.password)
        if target.username is not None and target.password is not None
        else None
    )
    admin_user = broker_files.OwnUser(settings.broker_admin_username, password)

    async def load_state() -> BrokerState:
        async with state.sessions() as session:
            city = await session.scalar(select(City).where(City.code == settings.city_code))
            assert city is not None
            return await broker_files.broker_state(session, city, own=own, admin=admin_user)

    return BrokerAdmin(
        target,
        username=settings.broker_admin_username,
        password=password,
        client_id=client_id,
        load_state=load_state,
    )


def create_app(
    settings: Settings,
    *,
    bus: Bus | None = None,
    clock: Clock | None = None,
    worker: TranscodeWorker | None = None,
    live: LiveSettings | None = None,
    live_bus: LiveBus | None = None,
) -> FastAPI:
    clock = clock or SystemClock()
    live_settings = live or LiveSettings()
    metrics = Metrics()
    role_categories(settings)  # a city's rights that break a rule stop the start
    # A production gateway missing a secret, or holding a weak one, does not start, and the
    # message names every one at once.
    check_secrets(
        settings,
        STARTUP_SECRETS
        + (WORKER_SECRETS if settings.background_workers else ())
        + (SMS_SECRETS if settings.sms_enabled else ())
        + (PUSH_SECRETS if settings.push_enabled else ()),
    )
    # Made (outside production) or read, and checked, before anything is served.
    push_key = VapidKey.from_settings(settings) if settings.push_enabled else None
    audio_links = AudioLinks.from_settings(settings)
    jwt_key = signing_key(settings)
    phone_cipher = PhoneCipher.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stopping.clear()  # an app started again after a stop serves its streams again
        secure_data_dir(settings.data_dir, settings.database_url)
        seal = KeySeal.from_settings(settings)
        engine = create_engine(settings.database_url)
        state.engine = engine
        # Whatever commits publications (a request, a schedule, an approval, a live session,
        # the sweeper, a speaker's catch-up) wakes the publisher right after its commit.
        after_commit = AfterCommit()
        state.sessions = create_sessions(engine, after_commit=after_commit)
        city_id = await _ensure_city(state, settings)
        state.city_id = city_id
        state.status_cache = StatusCache(
            ttl_s=settings.status_cache_s, max_stale_s=settings.status_max_stale_s
        )
        # The signing keys are decrypted (and any stored in the clear sealed) before anything
        # is served: a database copied without its key encryption key stops here.
        state.key_seal = seal
        try:
            async with state.sessions() as session:
                await prepare_keys(session, seal, clock.now())
        except SigningKeyError:
            await engine.dispose()
            raise
        own_worker = worker is None
        transcoder = worker or TranscodeWorker(
            AudioOptions(
                target_lufs=settings.target_lufs,
                opus_bitrate=settings.opus_bitrate,
                max_bytes=settings.max_upload_bytes,
                max_duration_s=settings.max_audio_seconds,
            ),
            max_workers=settings.transcode_workers,
            urgent_workers=settings.transcode_urgent_workers,
            priorities={
                category.value: settings.priority_of(category) for category in contract.Category
            },
            urgent_priority=settings.priority_of(contract.Category.DISASTER),
            timeout_s=settings.transcode_timeout_s,
        )
        mqtt = bus
        tasks: list[asyncio.Task[None]] = [
            asyncio.create_task(_supervised(HeapTrimmer().run, "heap-trim"), name="heap-trim")
        ]
        bus_id, live_id, admin_id = client_ids(settings)
        predecessors = _remember_session(settings, bus_id) if bus is None else []
        state.broker_admin = None
        if settings.broker_admin_username:
            admin = _broker_admin(state, settings, admin_id)
            tasks.append(
                asyncio.create_task(_supervised(admin.run, "broker-admin"), name="broker-admin")
            )
            state.broker_admin = admin
        if mqtt is None:
            real = MqttBus(
                settings.mqtt,
                client_id=bus_id,
                predecessors=predecessors,
                # An API-only replica must not take a share of acks it would never record.
                subscriptions=[
                    (contract.ack_subscription(), contract.ACK_QOS),
                    (contract.presence_subscription(), contract.PRESENCE_QOS),
                ]
                if settings.background_workers
                else [],
                clock=clock,
            )
            tasks.append(asyncio.create_task(_supervised(real.run, "mqtt-bus"), name="mqtt-bus"))
            mqtt = real
        publisher = Publisher(
            state.sessions,
            mqtt,
            settings,
            clock,
            owner=settings.replica_id,
            metrics=metrics,
            seal=seal,
            audio_links=audio_links,
        )
        after_commit.on_insert(Publication, publisher.wake.set)
        intake = Intake(
            state.sessions,
            mqtt,
            clock,
            city_id=city_id,
            city_code=settings.city_code,
            batch_max=settings.ack_batch_max,
            catchup_grace=timedelta(seconds=settings.catchup_grace_s),
            metrics=metrics,
        )
        sweeper = Sweeper(
            state.sessions,
            settings,
            clock,
            city_id=city_id,
            bus=mqtt,
            metrics=metrics,
            phone_cipher=phone_cipher,
        )
        state.bus = mqtt
        state.publisher = publisher
        state.intake = intake
        state.sweeper = sweeper
        state.runtime = Runtime(settings=settings, clock=clock, worker=transcoder)
        state.preview_gate = PreviewGate(
            concurrency=settings.preview_concurrency_per_person,
            per_minute=settings.preview_per_minute_per_person,
        )
        scheduler = ScheduleWorker(
            state.sessions,
            state.runtime,
            city_code=settings.city_code,
        )
        state.scheduler = scheduler
        state.cap_poller = CapPoller(state.sessions, state.runtime, city_code=settings.city_code)
        sms_worker: SmsWorker | None = None
        sms_sender: KannelSender | None = None
        state.sms_links = None
        if settings.sms_enabled:
            state.sms_links = ReportLinks.from_settings(settings)
            password = settings.sms_password.get_secret_value() if settings.sms_password else ""
            sms_sender = KannelSender(
                settings.sms_sendsms_url,
                username=settings.sms_username,
                password=password,
                sender=settings.sms_sender,
            )
            sms_worker = SmsWorker(
                state.sessions,
                settings,
                clock,
                sms_sender,
                city_id=city_id,
                cipher=phone_cipher,
                links=state.sms_links,
            )
        state.sms_worker = sms_worker
        push_worker: PushWorker | None = None
        push_sender: WebPushSender | None = None
        if push_key is not None:
            push_sender = WebPushSender(push_key, settings.push_vapid_subject)
            push_worker = PushWorker(state.sessions, settings, clock, push_sender, city_id=city_id)
        state.push_worker = push_worker
        fallback_worker = FallbackWorker(
            state.sessions,
            settings,
            clock,
            city_id=city_id,
            cipher=phone_cipher,
            queued=_waker(sms_worker, push_worker),
        )
        state.fallback_worker = fallback_worker
        fanout = live_bus
        if fanout is None and bus is None:
            real_fanout = MqttLiveBus(settings.mqtt, client_id=live_id)
            tasks.append(
                asyncio.create_task(_supervised(real_fanout.run, "live-bus"), name="live-bus")
            )
            fanout = real_fanout
        hub = LiveHub(
            state.sessions,
            state.runtime,
            live_settings,
            fanout or FakeLiveBus(),
            city_id=city_id,
            wake_publisher=publisher.wake.set,
        )
        state.live = hub
        await hub.start()
        checkpointer: Checkpointer | None = None
        if settings.background_workers:
            # Every such replica signs the chain's end into its own file (and its log): see
            # gateway/audit/checkpoints.py for why they do not take turns.
            checkpointer = Checkpointer(state.sessions, settings, clock)
            tasks += [
                asyncio.create_task(_supervised(run, name), name=name)
                for run, name in (
                    (publisher.run, "outbox-publisher"),
                    (intake.run, "ack-intake"),
                    (sweeper.run, "sweeper"),
                    (scheduler.run, "schedule-worker"),
                    (checkpointer.run, "audit-checkpoints"),
                )
            ]
        if settings.background_workers and settings.cap_feeds:
            tasks.append(
                asyncio.create_task(
                    _supervised(state.cap_poller.run, "cap-poller"), name="cap-poller"
                )
            )
        if settings.background_workers and sms_worker is not None:
            tasks.append(asyncio.create_task(_supervised(sms_worker.run, "sms"), name="sms"))
        if settings.background_workers and push_worker is not None:
            tasks.append(asyncio.create_task(_supervised(push_worker.run, "push"), name="push"))
        if settings.background_workers and (settings.sms_enabled or settings.push_enabled):
            # Without a channel to send on, nothing would be sent, so nothing is planned.
            tasks.append(
                asyncio.create_task(_supervised(fallback_worker.run, "fallback"), name="fallback")
            )
        state.checkpointer = checkpointer
        try:
            yield
        finally:
            # A server that runs the lifespan's end before closing connections ends the streams
            # here; uvicorn's GatewayServer (gateway/serving.py) has done so already.
            stopping.set()
            await hub.close()
            if settings.background_workers:
                # Hand this replica's share of acks and presence to the others, and record what
                # had already reached it, before the loops stop.
                await mqtt.leave()
                if await intake.drain(settings.shutdown_drain_s):
                    log.info(
                        "replica %s left the shared subscriptions and drained", settings.replica_id
                    )
                else:
                    log.warning("stopping with acks not yet recorded; speakers are asked again")
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if checkpointer is not None:
                try:
                    await checkpointer.write()  # the chain's end as this replica leaves it
                except Exception:
                    log.exception(
                        "감사 체크포인트 실패 / could not write the last audit checkpoint"
                    )
            if sms_sender is not None:
                await sms_sender.aclose()
            if push_sender is not None:
                await push_sender.aclose()
            if own_worker:
                await transcoder.close()
            await engine.dispose()

    app = FastAPI(
        title="Maeul gateway",
        version="0.1.0",
        summary="Smart-village broadcast gateway: phones and office PCs to village loudspeakers.",
        lifespan=lifespan,
    )
    # Every value the app holds is set here or in the lifespan above, with its type.
    state = AppState()
    app.state = state
    # Set when the replica begins to stop: open event streams end instead of holding the stop.
    stopping = asyncio.Event()
    state.stopping = stopping
    state.settings = settings
    state.audio_links = audio_links
    state.jwt_key = jwt_key
    state.phone_cipher = phone_cipher
    state.clock = clock
    state.metrics = metrics
    state.audit_budget = AnonymousBudget(settings.audit_anonymous_per_minute)
    state.push_key = push_key
    metrics.watch(state, DROP_REASONS)
    install_handlers(app)

    # Writes the audit row of every request.
    app.add_middleware(AfterRequest)
    # The same security headers on every HTML response, whichever route or mount served it.
    app.add_middleware(SecurityHeaders)
    # Added last, so outermost: the timer sees the whole request, and every line logged while
    # serving it (the audit's included) carries its id.
    app.add_middleware(RequestTimer, metrics=metrics)
    app.add_middleware(RequestIds)

    @app.get("/healthz", operation_id="health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", operation_id="ready", tags=["health"])
    async def ready(request: Request) -> JSONResponse:
        checks = {"database": False, "mqtt": bool(state_of(request).bus.connected)}
        with contextlib.suppress(Exception):
            async with state_of(request).sessions() as session:
                await session.execute(text("SELECT 1"))
                checks["database"] = True
        ok = all(checks.values())
        body: dict[str, bool] = {"ready": ok, **checks}
        admin = admin_of(state_of(request))
        if admin is not None:
            # Reported, not required: broadcasts go out without it; only new broker passwords
            # and prompt reconciles wait for it.
            body["broker_admin"] = admin.connected
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        operation_id="metrics",
        summary="Metrics",
        tags=["health"],
        response_class=PlainTextResponse,
    )
    async def render_metrics() -> Response:
        # This replica's own numbers: Prometheus scrapes each replica and adds them up.
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    app.include_router(broadcasts_router, prefix=API)
    app.include_router(audio_router, prefix=API)
    app.include_router(deliveries_router, prefix=API)
    app.include_router(places_router, prefix=API)
    app.include_router(speakers_router, prefix=API)
    app.include_router(keys_router, prefix=API)
    app.include_router(provisioning_router, prefix=API)
    app.include_router(enrollment_router, prefix=API)
    app.include_router(schedules_router, prefix=API)
    app.include_router(quiet_router, prefix=API)
    app.include_router(templates_router, prefix=API)
    app.include_router(devicesec_router, prefix=API)
    app.include_router(broker_hooks_router, prefix=API)
    app.include_router(users_router, prefix=API)
    app.include_router(audit_router, prefix=API)
    app.include_router(approvals_router, prefix=API)
    app.include_router(live_router, prefix=API)
    app.include_router(live_pages)
    app.include_router(notices_router, prefix=API)
    app.include_router(residents_router, prefix=API)
    app.include_router(cap_publish_router, prefix=API)
    app.include_router(officer_alerts_router, prefix=API)
    app.include_router(sms_router, prefix=API)
    app.include_router(cap_ingest_router, prefix=API)
    app.include_router(push_router, prefix=API)
    app.include_router(fallback_router, prefix=API)
    app.include_router(web_router, prefix=API)
    app.include_router(web_pages)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


__all__ = ["create_app"]
