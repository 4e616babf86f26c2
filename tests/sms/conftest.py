"""The gateway served on a real port (so Kannel can call back with delivery reports), sending
through the session's Kannel to its fake SMSC, against a real database."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from gateway.app import create_app
from gateway.bus import FakeBus
from gateway.residents.crypto import PhoneCipher
from gateway.settings import Settings
from gateway.sms import service
from gateway.sms.models import SmsMessage
from gateway.sms.sendsms import KannelSender
from gateway.sms.worker import SmsWorker
from maeul.kannel import SENDSMS_USER, KannelProcess
from tests.support.databases import copy_database
from tests.support.net import free_port
from tests.support.people import API_TOKEN

REPORT_WAIT_S = 15.0


@dataclass
class SmsGateway:
    app: FastAPI
    settings: Settings
    kannel: KannelProcess
    url: str
    senders: list[KannelSender] = field(default_factory=list)

    @property
    def worker(self) -> SmsWorker:
        worker: SmsWorker | None = self.app.state.sms_worker
        assert worker is not None
        return worker

    @property
    def cipher(self) -> PhoneCipher:
        cipher: PhoneCipher = self.app.state.phone_cipher
        return cipher

    def new_worker(self, sender: KannelSender | None = None, **overrides: object) -> SmsWorker:
        """Another worker on the same database: another replica, another Kannel, other limits."""
        settings = self.settings.model_copy(update=overrides)
        return SmsWorker(
            self.app.state.sessions,
            settings,
            self.app.state.clock,
            sender or self.sender(),
            city_id=self.app.state.city_id,
            cipher=self.cipher,
            links=self.app.state.sms_links,
        )

    def sender(self, *, url: str | None = None, password: str | None = None) -> KannelSender:
        sender = KannelSender(
            url or self.kannel.sendsms_url,
            username=SENDSMS_USER,
            password=password or self.kannel.config.sendsms_password,
            sender="1588",
        )
        self.senders.append(sender)
        return sender

    async def enqueue(self, to: str, text: str, **kwargs: object) -> str:
        async with self.app.state.sessions() as session:
            message = await service.enqueue_sms(
                session,
                cipher=self.cipher,
                city_id=self.app.state.city_id,
                to_number=to,
                text=text,
                reference_kind="resident",
                reference_id=secrets.token_hex(4),
                now=self.app.state.clock.now(),
                **kwargs,  # type: ignore[arg-type]
            )
            await session.commit()
            return message.id

    async def message(self, message_id: str) -> SmsMessage:
        async with self.app.state.sessions() as session:
            return await service.get_message(session, message_id)

    async def wait_for(self, message_id: str, done: Callable[[SmsMessage], bool]) -> SmsMessage:
        """The message once `done` holds for it (the delivery reports arrive on their own)."""
        async with asyncio.timeout(REPORT_WAIT_S):
            while not done(message := await self.message(message_id)):  # noqa: ASYNC110 - the database
                await asyncio.sleep(0.05)
        return message


def random_mobile() -> str:
    """A number of its own for each message: the fake SMSC's log is shared by the session.
    Never in the synthetic range (010-0XXX-XXXX), which the worker refuses."""
    return f"010{10**7 + secrets.randbelow(9 * 10**7):08d}"


@contextlib.asynccontextmanager
async def serve_gateway(
    database_url: str, data_dir: Path, kannel: KannelProcess
) -> AsyncIterator[SmsGateway]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        environment="test",
        database_url=database_url,
        data_dir=data_dir,
        api_token=API_TOKEN,
        city_code="testcity",
        public_url=url,
        background_workers=False,  # each test drives the SMS worker itself
        sms_sendsms_url=kannel.sendsms_url,
        sms_username=SENDSMS_USER,
        sms_password=kannel.config.sendsms_password,
        sms_sender="1588",
    )
    app = create_app(settings, bus=FakeBus())
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    serving = asyncio.create_task(server.serve(), name="sms-test-gateway")
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if serving.done():
                    serving.result()
                await asyncio.sleep(0.02)
        gateway = SmsGateway(app, settings, kannel, url)
        try:
            yield gateway
        finally:
            for sender in gateway.senders:
                await sender.aclose()
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
async def sms_gateway(
    migrated_sqlite: Path, tmp_path: Path, kannel: KannelProcess
) -> AsyncIterator[SmsGateway]:
    """The gateway (SQLite) with SMS on, served on a free port, sending through `kannel`."""
    database_url = copy_database(migrated_sqlite, tmp_path / "maeul.db")
    async with serve_gateway(database_url, tmp_path / "data", kannel) as gateway:
        yield gateway


@pytest.fixture
def client_for() -> Callable[[SmsGateway], httpx.AsyncClient]:
    return lambda gateway: httpx.AsyncClient(base_url=gateway.url, timeout=10)
