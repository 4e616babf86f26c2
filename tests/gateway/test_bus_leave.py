"""A replica stopping on purpose hands its share of the speakers' messages to the others."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from pathlib import Path

import aiomqtt
from sqlalchemy import select

from gateway.app import create_app
from gateway.bus import FakeBus, Incoming, MqttBus
from gateway.db import create_engine, create_sessions
from gateway.settings import MqttTarget, Settings
from gateway.speakers.models import Speaker
from tests.support.databases import seed_database
from tests.support.people import API_TOKEN
from wire import contract

MESSAGES = 40


async def _collect(bus: MqttBus, into: list[str]) -> None:
    while True:
        into.append((await bus.incoming.get()).topic)


async def test_a_replica_that_leaves_takes_no_share_of_later_messages(mqtt_url: str) -> None:
    # A group of its own: sessions other tests left in the gateway's group take no share here.
    group = f"leave-{secrets.token_hex(4)}"
    subscriptions = [(contract.ack_subscription(group), contract.ACK_QOS)]
    target = MqttTarget(mqtt_url)
    staying = MqttBus(target, client_id=f"{group}-a", subscriptions=subscriptions)
    leaving = MqttBus(target, client_id=f"{group}-b", subscriptions=subscriptions)
    runs = [asyncio.create_task(bus.run()) for bus in (staying, leaving)]
    kept: list[str] = []
    collector = asyncio.create_task(_collect(staying, kept))
    try:
        async with asyncio.timeout(20):
            while not (staying.connected and leaving.connected):  # noqa: ASYNC110 - polling
                await asyncio.sleep(0.05)
        await leaving.leave()
        runs[1].cancel()  # the process ends: its session stays with the broker for a while
        with contextlib.suppress(asyncio.CancelledError):
            await runs[1]

        async with aiomqtt.Client(
            target.host, target.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as speaker:
            for n in range(MESSAGES):
                await speaker.publish(
                    contract.ack_topic("leavecity", f"s{n}"), b"{}", qos=contract.ACK_QOS
                )
        async with asyncio.timeout(20):
            while len(kept) < MESSAGES:  # noqa: ASYNC110 - polling a list
                await asyncio.sleep(0.05)
        assert sorted(kept) == sorted(
            contract.ack_topic("leavecity", f"s{n}") for n in range(MESSAGES)
        )
        assert leaving.incoming.empty()
    finally:
        for task in (collector, *runs):
            task.cancel()
        await asyncio.gather(collector, *runs, return_exceptions=True)


async def _publish_acks(target: MqttTarget, names: list[str]) -> None:
    async with aiomqtt.Client(target.host, target.port, protocol=aiomqtt.ProtocolVersion.V5) as s:
        for name in names:
            await s.publish(contract.ack_topic("leavecity", name), b"{}", qos=contract.ACK_QOS)


async def test_a_restarted_replica_reads_and_ends_the_session_its_crash_left(mqtt_url: str) -> None:
    # Client ids are new at every start; the next start resumes the session the crash left, reads
    # the acks queued in it and ends it, so it takes no share of later ones.
    group = f"crash-{secrets.token_hex(4)}"
    subscriptions = [(contract.ack_subscription(group), contract.ACK_QOS)]
    target = MqttTarget(mqtt_url)
    crashed = MqttBus(target, client_id=f"{group}-1", subscriptions=subscriptions)
    run = asyncio.create_task(crashed.run())
    async with asyncio.timeout(20):
        while not crashed.connected:  # noqa: ASYNC110 - polling
            await asyncio.sleep(0.05)
    run.cancel()  # no leave: the session stays with the broker
    with contextlib.suppress(asyncio.CancelledError):
        await run
    queued = [f"q{n}" for n in range(MESSAGES // 2)]
    await _publish_acks(target, queued)

    restarted = MqttBus(
        target, client_id=f"{group}-2", subscriptions=subscriptions, predecessors=[f"{group}-1"]
    )
    got: list[str] = []
    tasks = [asyncio.create_task(restarted.run()), asyncio.create_task(_collect(restarted, got))]
    try:
        async with asyncio.timeout(20):
            while not restarted.connected:  # noqa: ASYNC110 - polling
                await asyncio.sleep(0.05)
        later = [f"l{n}" for n in range(MESSAGES)]
        await _publish_acks(target, later)
        async with asyncio.timeout(20):
            while len(got) < len(queued) + len(later):  # noqa: ASYNC110 - polling a list
                await asyncio.sleep(0.05)
        assert sorted(got) == sorted(contract.ack_topic("leavecity", n) for n in queued + later)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_stopping_replica_records_what_it_was_handed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"
    await seed_database(url, preset="tiny", city_code="testcity")
    engine = create_engine(url)
    try:
        async with create_sessions(engine)() as session:
            code = (await session.scalars(select(Speaker.code).limit(1))).one()
        settings = Settings(
            environment="test",
            database_url=url,
            data_dir=tmp_path / "data",
            api_token=API_TOKEN,
            city_code="testcity",
            quiet_hours="off",
        )
        bus = FakeBus()
        app = create_app(settings, bus=bus)
        birth = contract.Presence(
            speaker=code, status="online", at_ms=contract.now_ms(), codecs=("opus",)
        )
        async with app.router.lifespan_context(app):
            # Handed over by the broker just as the stop begins.
            bus.incoming.put_nowait(
                Incoming(contract.presence_topic("testcity", code), contract.encode_presence(birth))
            )
        assert bus.left
        async with create_sessions(engine)() as session:
            online = await session.scalar(select(Speaker.online).where(Speaker.code == code))
        assert online is True
    finally:
        await engine.dispose()
