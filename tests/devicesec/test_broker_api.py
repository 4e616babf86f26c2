"""Credentials issued, changed and revoked through the API reach a real Mosquitto at once: the
in-process gateway manages the broker's users over dynamic security, with no file and no
reload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from gateway.app import client_ids, create_app
from gateway.bus import FakeBus
from gateway.clock import FakeClock
from gateway.db import create_engine, create_sessions
from gateway.devicesec import broker_files, dynsec
from gateway.devicesec.brokeradmin import BrokerAdmin, BrokerAdminError
from gateway.devicesec.models import SpeakerCredential
from gateway.devicesec.mosquitto import new_secret, verify_password
from gateway.places.service import get_city
from gateway.seed import seed
from gateway.settings import Settings
from maeul.broker import LocalMosquitto
from maeul.broker_config import MosquittoConfig, find_mosquitto
from maeul.broker_config import write_broker_file as write_file
from maeul.mqtt_probe import probe_async
from tests.support.databases import copy_database
from tests.support.people import API_TOKEN, bearer
from wire import contract

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="no mosquitto binary")

CITY = "apicity"
TOKEN = API_TOKEN
ADMIN = "broker-admin"


@dataclass
class Managed:
    app: FastAPI
    client: httpx.AsyncClient
    broker: LocalMosquitto
    admin: BrokerAdmin

    async def probe(self, user: str, password: str, client_id: str | None = None) -> int:
        async with asyncio.timeout(10):
            return await probe_async(
                self.broker.host,
                self.broker.port,
                username=user,
                password=password,
                client_id=client_id or contract.speaker_client_id(user),
            )

    async def speaker_id(self, code: str) -> int:
        found = await self.client.get("/api/v1/speakers", params={"limit": 1000})
        return int(next(s["id"] for s in found.json()["items"] if s["code"] == code))

    async def issue(self, code: str) -> dict[str, Any]:
        response = await self.client.post(
            f"/api/v1/speakers/{await self.speaker_id(code)}/credentials"
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def reconciled_after(self, change: Any) -> httpx.Response:
        """Make an API change, then wait for the reconcile it asks for."""
        before = self.admin.reconciled
        response: httpx.Response = await change
        async with asyncio.timeout(10):
            while self.admin.reconciled <= before:  # noqa: ASYNC110 - until the broker follows
                await asyncio.sleep(0.01)
        return response


@pytest.fixture
async def managed(tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[Managed]:
    url = copy_database(migrated_sqlite, tmp_path / "maeul.db")
    admin_password, gateway_password = new_secret(), new_secret()
    engine = create_engine(url)
    try:
        async with create_sessions(engine)() as session:
            await seed(session, preset="tiny", city_code=CITY)
            city = await get_city(session, CITY)
            rendered = await broker_files.render_dynsec_file(
                session,
                city,
                own=broker_files.OwnUser("gateway", gateway_password),
                admin=broker_files.OwnUser(ADMIN, admin_password),
            )
            await session.commit()
    finally:
        await engine.dispose()
    files = tmp_path / "broker"
    write_file(files / "dynamic-security.json", rendered)
    config = MosquittoConfig(
        data_dir=files, allow_anonymous=False, dynsec_file=files / "dynamic-security.json"
    )
    async with LocalMosquitto(config) as broker:
        settings = Settings(
            environment="test",
            database_url=url,
            data_dir=tmp_path / "data",
            api_token=TOKEN,
            city_code=CITY,
            mqtt_url=f"mqtt://gateway:{gateway_password}@{broker.host}:{broker.port}",
            broker_admin_username=ADMIN,
            broker_admin_password=SecretStr(admin_password),
            background_workers=False,
        )
        app = create_app(settings, bus=FakeBus(), clock=FakeClock())
        async with app.router.lifespan_context(app):
            admin = app.state.broker_admin
            async with asyncio.timeout(10):
                while admin.reconciled == 0:  # noqa: ASYNC110 - until it first reconciled
                    await asyncio.sleep(0.01)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://gateway",
                headers=bearer(TOKEN),
            ) as client:
                yield Managed(app, client, broker, admin)


async def test_issued_credentials_work_at_once_and_only_under_their_client_id(
    managed: Managed,
) -> None:
    code = "d01-v001-s1"
    first = await managed.issue(code)
    assert await managed.probe(code, first["password"], first["client_id"]) == 0
    other = contract.speaker_client_id("d01-v001-s2")
    assert await managed.probe(code, first["password"], other) != 0
    assert await managed.probe(code, first["password"], "maeul-gw-local") != 0

    second = await managed.issue(code)
    assert await managed.probe(code, first["password"]) != 0, "the old password is shut out"
    assert await managed.probe(code, second["password"]) == 0


async def test_a_deleted_or_renamed_speaker_is_shut_out(managed: Managed) -> None:
    deleted, renamed = "d01-v001-s1", "d01-v001-s2"
    passwords = {code: (await managed.issue(code))["password"] for code in (deleted, renamed)}

    gone = await managed.reconciled_after(
        managed.client.delete(f"/api/v1/speakers/{await managed.speaker_id(deleted)}")
    )
    assert gone.status_code == 204
    assert await managed.probe(deleted, passwords[deleted]) != 0

    moved = await managed.reconciled_after(
        managed.client.patch(
            f"/api/v1/speakers/{await managed.speaker_id(renamed)}", json={"code": "new-name"}
        )
    )
    assert moved.status_code == 200, moved.text
    assert await managed.probe(renamed, passwords[renamed]) != 0
    assert await managed.probe("new-name", passwords[renamed]) != 0, "issued for the old name"


async def test_a_moved_speaker_reads_its_new_village_at_once(managed: Managed) -> None:
    code = "d01-v001-s1"
    await managed.issue(code)
    villages = (await managed.client.get("/api/v1/villages", params={"limit": 100})).json()
    target = next(v for v in villages["items"] if v["code"] == "d02-v001")

    moved = await managed.reconciled_after(
        managed.client.patch(
            f"/api/v1/speakers/{await managed.speaker_id(code)}", json={"village_id": target["id"]}
        )
    )
    assert moved.status_code == 200, moved.text
    role = await managed.admin.send([{"command": "getRole", "rolename": f"maeul-speaker-{code}"}])
    topics = {acl["topic"] for acl in role[0]["data"]["role"]["acls"]}
    assert contract.command_topic_village(CITY, "d02-v001") in topics
    assert contract.command_topic_district(CITY, "d02") in topics
    assert contract.command_topic_village(CITY, "d01-v001") not in topics


async def test_a_password_the_broker_did_not_take_is_never_issued(managed: Managed) -> None:
    code = "d01-v001-s1"
    first = await managed.issue(code)
    await managed.broker.stop()

    refused = await managed.client.post(
        f"/api/v1/speakers/{await managed.speaker_id(code)}/credentials"
    )

    assert refused.status_code == 503
    assert refused.json()["error"] == "broker_unavailable"
    async with managed.app.state.sessions() as session:
        row = await session.get(SpeakerCredential, await managed.speaker_id(code))
    assert row is not None
    assert verify_password(first["password"], row.password_hash)


def test_the_gateways_client_ids_are_new_at_every_start() -> None:
    settings = Settings(environment="test", replica_id="local", api_token=TOKEN)
    first, second = client_ids(settings), client_ids(settings)
    assert first != second
    assert len(set(first)) == 3
    for one in first:
        assert one.startswith("maeul-gw-local-")
        assert one != "maeul-gw-local"


async def test_the_brokers_own_users_cannot_be_taken_over(managed: Managed) -> None:
    # An account an operator made by hand on the broker (a health check): not the gateway's.
    await managed.admin.send(
        [{"command": "createClient", "username": "probe", "password": new_secret()}]
    )
    for name in (ADMIN, "gateway", "probe"):
        for role in ("monitor", "gateway"):
            taken = await managed.client.post(
                "/api/v1/broker/accounts", json={"username": name, "role": role}
            )
            assert (taken.status_code, taken.json()["error"]) == (409, "username_taken"), name

    answers = await managed.admin.send(
        [{"command": "getClient", "username": name} for name in (ADMIN, "gateway", "probe")]
    )
    roles = [[r["rolename"] for r in a["data"]["client"]["roles"]] for a in answers]
    assert roles == [["maeul-admin"], ["maeul-gateway"], []]
    settings = managed.app.state.settings
    admin_password = settings.broker_admin_password.get_secret_value()
    assert await managed.probe(ADMIN, admin_password, "a-check") == 0
    assert await managed.probe("gateway", settings.mqtt.password, "b-check") == 0
    listed = (await managed.client.get("/api/v1/broker/accounts")).json()
    assert listed == []
    await managed.issue("d01-v001-s1")  # the admin connection still works


async def test_a_push_the_broker_refused_halfway_changes_nothing(managed: Managed) -> None:
    code = "d01-v001-s1"
    first = await managed.issue(code)
    client, acls = dynsec.BrokerClient(code, ("no-such-role",), first["client_id"]), {}

    with pytest.raises(BrokerAdminError) as refused:
        await managed.admin.put(client, new_secret(), acls)

    assert not refused.value.maybe_applied
    assert await managed.probe(code, first["password"]) == 0, "the old password still works"
    answer = await managed.admin.send([{"command": "getClient", "username": code}])
    roles = [r["rolename"] for r in answer[0]["data"]["client"]["roles"]]
    assert roles == [dynsec.speaker_role(code)]


async def test_readiness_reports_the_broker_admin_connection_without_failing(
    managed: Managed,
) -> None:
    up = await managed.client.get("/readyz")
    assert up.json()["broker_admin"] is True
    await managed.broker.stop()
    async with asyncio.timeout(10):
        while managed.admin.connected:  # noqa: ASYNC110 - until it sees the broker gone
            await asyncio.sleep(0.01)

    down = await managed.client.get("/readyz")

    assert down.json()["broker_admin"] is False
    # Broadcasting goes over the gateway's own connection (a fake bus here), which is up.
    assert (down.status_code, down.json()["ready"]) == (200, True)


async def test_a_monitor_connects_under_its_own_client_id_only(managed: Managed) -> None:
    code = "d01-v001-s1"
    speaker = await managed.issue(code)
    created = await managed.client.post(
        "/api/v1/broker/accounts", json={"username": "watcher", "role": "monitor"}
    )
    assert created.status_code == 201, created.text
    assert created.json()["client_id"] == "watcher"
    password = created.json()["password"]
    listed = (await managed.client.get("/api/v1/broker/accounts")).json()
    assert [(a["username"], a["client_id"]) for a in listed] == [("watcher", "watcher")]

    async with aiomqtt.Client(
        managed.broker.host,
        managed.broker.port,
        username=code,
        password=speaker["password"],
        identifier=speaker["client_id"],
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as connected:
        assert await managed.probe("watcher", password, speaker["client_id"]) != 0
        # Still the speaker's session: a QoS 1 publish is acknowledged on it.
        topic = contract.presence_topic(CITY, code)
        await connected.publish(topic, b"{}", qos=1)
    assert await managed.probe("watcher", password, "another-id") != 0
    assert await managed.probe("watcher", password, "watcher") == 0
    gateway = await managed.client.post(
        "/api/v1/broker/accounts", json={"username": "gw-east", "role": "gateway"}
    )
    assert gateway.json()["client_id"] is None, "a gateway takes a fresh id each start"
    spoof = await managed.client.post(
        "/api/v1/broker/accounts", json={"username": "spk-d01-v001-s1", "role": "monitor"}
    )
    assert (spoof.status_code, spoof.json()["error"]) == (409, "username_taken")
