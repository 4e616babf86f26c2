"""The command-signing keys: sealed at rest under a key kept outside the database, revocable by a
city administrator (a revoked key leaves the ring's trust and is listed as revoked), and the
gateway's files private to it."""

from __future__ import annotations

import asyncio
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from sqlalchemy import select

from gateway import keyfiles
from gateway.app import create_app
from gateway.auth import Role
from gateway.bus import FakeBus
from gateway.clock import FakeClock
from gateway.datafiles import sqlite_path
from gateway.db import create_engine, create_sessions
from gateway.migrations import upgrade
from gateway.settings import Settings
from gateway.signing import KEK_NAME, SigningKey, SigningKeyError, active_signer, is_sealed
from tests.flow.conftest import TOKEN, Stack
from tests.flow.test_broadcast_flow import _commands, _create, recording
from tests.support.people import sign_up
from wire import contract

__all__ = ["recording"]


def _settings(data_dir: Path, database_url: str, **values: object) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        data_dir=data_dir,
        api_token=TOKEN,
        city_code="testcity",
        background_workers=False,
        **values,  # type: ignore[arg-type]
    )


async def _start_and_stop(settings: Settings) -> None:
    app = create_app(settings, bus=FakeBus(), clock=FakeClock())
    async with app.router.lifespan_context(app):
        pass


async def _stored_keys(database_url: str) -> list[SigningKey]:
    engine = create_engine(database_url)
    try:
        async with create_sessions(engine)() as session:
            return list(await session.scalars(select(SigningKey)))
    finally:
        await engine.dispose()


async def test_a_database_copied_without_its_key_file_cannot_sign(tmp_path: Path) -> None:
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    url = f"sqlite+aiosqlite:///{home / 'maeul.db'}"
    await asyncio.to_thread(upgrade, url)
    await _start_and_stop(_settings(home, url))
    [key] = await _stored_keys(url)
    assert is_sealed(key.private_key), "never stored in the clear"

    elsewhere.mkdir()
    shutil.copy(home / "maeul.db", elsewhere / "maeul.db")
    copied = f"sqlite+aiosqlite:///{elsewhere / 'maeul.db'}"
    with pytest.raises(SigningKeyError, match="GATEWAY_KEY_ENCRYPTION_KEY") as refused:
        await _start_and_stop(_settings(elsewhere, copied))
    assert "cannot decrypt the signing key" in str(refused.value)

    # With the key file handed over, the copy signs with the same key.
    kek_file = home / keyfiles.DIRECTORY / KEK_NAME
    await _start_and_stop(_settings(elsewhere, copied, key_encryption_key_file=kek_file))


async def test_keys_stored_in_the_clear_are_sealed_at_start(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"
    await asyncio.to_thread(upgrade, url)
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    engine = create_engine(url)
    try:
        async with create_sessions(engine)() as session:
            # As an older gateway wrote it.
            session.add(
                SigningKey(
                    key_id="0ld0ld0ld0ld0ld0",
                    private_key=raw,
                    public_key=public,
                    active=True,
                    created_at=datetime.now(UTC),
                )
            )
            await session.commit()
    finally:
        await engine.dispose()

    app = create_app(_settings(tmp_path / "data", url), bus=FakeBus(), clock=FakeClock())
    async with app.router.lifespan_context(app):
        [key] = await _stored_keys(url)
        assert is_sealed(key.private_key)
        assert raw not in key.private_key
        assert app.state.key_seal.open(key.key_id, key.private_key) == raw
        # Still the signing key: the speakers that trust it need nothing new.
        async with app.state.sessions() as session:
            signer = await active_signer(session, datetime.now(UTC), app.state.key_seal)
        assert signer.key_id == "0ld0ld0ld0ld0ld0"
        assert signer.private_key == raw


async def test_a_city_admin_revokes_a_key_and_speakers_learn_it_from_the_ring(
    stack: Stack, recording: bytes
) -> None:
    districts = (await stack.client.get("/api/v1/districts")).json()["items"]
    admin = await sign_up(stack.client, "keys-admin", Role.CITY_ADMIN)
    officer = await sign_up(
        stack.client, "keys-officer", Role.DISTRICT_OFFICER, district_ids=[districts[0]["id"]]
    )
    first = (await stack.client.get("/api/v1/keys/ring")).json()
    anchor = contract.KeyRing.model_validate(first).keys[0]
    speaker = contract.SignatureCheck({anchor.key_id: anchor.raw_public_key()})
    stack.clock.advance(60)
    rotated = (await stack.client.post("/api/v1/keys/rotate", headers=admin.headers)).json()
    assert speaker.learn(
        contract.decode_keyring((await stack.client.get("/api/v1/keys/ring")).content), "testcity"
    )

    stolen = rotated["key_id"]
    refused = await stack.client.post(
        f"/api/v1/keys/{stolen}/revoke", json={"reason": "stolen"}, headers=officer.headers
    )
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"] == "role_not_allowed"
    response = await stack.client.post(
        f"/api/v1/keys/{stolen}/revoke",
        json={"reason": "도난 / laptop stolen"},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["revoked"]["key_id"] == stolen
    assert body["revoked"]["revoked_at"] is not None
    assert body["revoked"]["active"] is False
    fresh = body["active"]["key_id"]
    assert body["active"]["active"] is True
    assert fresh != stolen, "revoking starts a new key"

    again = await stack.client.post(
        f"/api/v1/keys/{stolen}/revoke", json={"reason": "again"}, headers=admin.headers
    )
    assert (again.status_code, again.json()["error"]) == (409, "signing_key_revoked")
    missing = await stack.client.post(
        "/api/v1/keys/nope/revoke", json={"reason": "x"}, headers=admin.headers
    )
    assert (missing.status_code, missing.json()["error"]) == (404, "signing_key_not_found")

    listed = {k["key_id"]: k for k in (await stack.client.get("/api/v1/keys")).json()}
    assert listed[stolen]["revocation_reason"] == "도난 / laptop stolen"
    ring = contract.decode_keyring((await stack.client.get("/api/v1/keys/ring")).content)
    assert stolen not in {k.key_id for k in ring.keys}
    assert [(r.key_id, r.revoked_by) for r in ring.revoked] == [(stolen, fresh)]
    assert fresh in speaker.learn(ring, "testcity")
    assert speaker.is_revoked(stolen)
    assert not speaker.knows(stolen)

    # The gateway's next command is signed by the new key (which sends speakers to the ring).
    status, created = await _create(stack, recording, all_villages="true")
    assert status == 201, created
    await stack.publish_pending()
    assert {command.key_id for _, command in _commands(stack)} == {fresh}

    audit = (await stack.client.get("/api/v1/audit-events", params={"limit": 500})).json()
    revocations = [
        (r["actor"].partition("#")[0], r["outcome"], r["reason"])
        for r in audit["items"]
        if r["action"] == "revoke_signing_key"
    ]
    assert ("keys-admin", "ok", "도난 / laptop stolen") in revocations
    assert ("keys-officer", "denied", None) in revocations


async def test_revoking_the_key_every_speaker_trusts_is_refused_unless_asked_for(
    stack: Stack,
) -> None:
    admin = await sign_up(stack.client, "root-admin", Role.CITY_ADMIN)
    [root] = (await stack.client.get("/api/v1/keys")).json()
    alone = await stack.client.post(
        f"/api/v1/keys/{root['key_id']}/revoke", json={"reason": "stolen"}, headers=admin.headers
    )
    assert (alone.status_code, alone.json()["error"]) == (409, "revocation_strands_speakers")
    stack.clock.advance(60)
    await stack.client.post("/api/v1/keys/rotate", headers=admin.headers)

    refused = await stack.client.post(
        f"/api/v1/keys/{root['key_id']}/revoke", json={"reason": "stolen"}, headers=admin.headers
    )

    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "revocation_strands_speakers"
    assert "다시 설정" in refused.json()["detail"]
    listed = {k["key_id"]: k for k in (await stack.client.get("/api/v1/keys")).json()}
    assert listed[root["key_id"]]["revoked_at"] is None, "nothing changed"
    assert len(listed) == 2, "no new key either"

    stranded = await stack.client.post(
        f"/api/v1/keys/{root['key_id']}/revoke",
        json={"reason": "stolen", "strand_speakers": True},
        headers=admin.headers,
    )
    assert stranded.status_code == 200, stranded.text
    assert stranded.json()["revoked"]["key_id"] == root["key_id"]


async def test_the_gateway_keeps_its_files_to_itself(stack: Stack, recording: bytes) -> None:
    status, created = await _create(stack, recording, all_villages="true")
    assert status == 201, created
    await stack.publish_pending()
    data_dir = stack.settings.data_dir
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    files = [data_dir]
    database = sqlite_path(stack.settings.database_url)
    if database is not None:
        files += [database, *(database.parent.glob(f"{database.name}-*"))]
        assert any(p.name.endswith("-wal") for p in files), "WAL in use: its mode is checked"
    files += list(data_dir.rglob("*"))
    modes = {
        str(p): oct(stat.S_IMODE(p.stat().st_mode))
        for p in files
        if stat.S_IMODE(p.stat().st_mode) & 0o077
    }
    assert modes == {}, "readable by others"
