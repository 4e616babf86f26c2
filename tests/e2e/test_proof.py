"""End to end: an honest simulated fleet's played acks carry receipts the gateway verifies, and
`maeul proof` checks them again, from the API and offline from an export."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maeul.cli import app as cli
from tests.e2e.harness import (
    TOKEN,
    GatewayProcess,
    broadcast_to,
    fleet_for,
    wait_online,
    wait_until_final,
)
from tests.media import make_recording
from tests.support.databases import seed_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
async def gateway(tmp_path: Path, mqtt_url: str) -> AsyncIterator[GatewayProcess]:
    process = GatewayProcess(
        database_url=await seed_database(
            f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}", preset="tiny", city_code="jinju"
        ),
        mqtt_url=mqtt_url,
        data_dir=tmp_path,
    )
    await process.start()
    try:
        yield process
    finally:
        process.stop()


async def test_an_honest_fleet_s_receipts_verify_online_and_offline(
    gateway: GatewayProcess, mqtt_url: str, tmp_path: Path
) -> None:
    clip = make_recording(tmp_path / "notice.m4a", "m4a", seconds=2.0).read_bytes()
    async with gateway.client() as client:
        fleet = await fleet_for(client, mqtt_url, gateway.url, receipts=True, speed=4.0)
        try:
            total = len(list(fleet))
            await wait_online(client, total)
            villages = (await client.get("/api/v1/villages", params={"limit": 100})).json()
            body = await broadcast_to(client, clip, [v["id"] for v in villages["items"]])
            summary = await wait_until_final(client, body["id"], limit_s=120)
            detail = (await client.get(f"/api/v1/broadcasts/{body['id']}")).json()
        finally:
            await fleet.stop()
    assert summary["speakers"]["played"] == summary["speakers"]["total"] == total
    speakers = [s for v in detail["village_deliveries"] for s in v["speakers"]]
    assert all(s["proof"]["verified"] is True for s in speakers), speakers
    assert all(s["proof"]["level_dbfs"] is not None for s in speakers)

    runner = CliRunner()
    env = {"GATEWAY_URL": gateway.url, "GATEWAY_API_TOKEN": TOKEN}
    online = runner.invoke(cli, ["proof", "verify", body["id"]], env=env)
    assert online.exit_code == 0, online.output
    assert online.output.count("정상\t") == total + 1  # and the gateway's signature

    ring = tmp_path / "ring.json"
    exported = runner.invoke(cli, ["proof", "export", body["id"], "--keys", str(ring)], env=env)
    assert exported.exit_code == 0, exported.output
    export = json.loads(exported.output)
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    offline = runner.invoke(cli, ["proof", "verify", "--file", str(path), "--keys", str(ring)])
    assert offline.exit_code == 0, offline.output

    # An export whose encodings were swapped for another recording proves nothing.
    export["encodings"] = [{**e, "sha256": "f" * 64} for e in export["encodings"]]
    path.write_text(json.dumps(export))
    tampered = runner.invoke(cli, ["proof", "verify", "--file", str(path), "--keys", str(ring)])
    assert tampered.exit_code == 1, tampered.output
    assert "실패\t게이트웨이 서명\t" in tampered.output
