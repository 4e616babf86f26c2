"""`maeul speaker enroll` end to end: the command, on an interpreter without the gateway's
modules (as a speaker's box has it), redeems a code at a gateway served over HTTP, writes the
agent's configuration and receipt key, and `python -m devices.agent` loads them; a used or
expired code stops it with the gateway's reason and nothing written."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn

from devices.agent_config import load_config
from devices.enroll import enroll
from gateway.speakers.models import Speaker
from tests.flow.conftest import Stack
from tests.flow.test_enrollment import _basic, _issue, _speaker
from tests.support.agent_only import ROOT, python_agent_only
from tests.support.databases import copy_database
from tests.support.net import free_port


@pytest.fixture
def migrated_database_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    """SQLite only: the API's tests cover PostgreSQL; this one is about the speaker's side."""
    return copy_database(migrated_sqlite, tmp_path / "maeul.db")


@pytest.fixture
async def gateway_url(stack: Stack) -> AsyncIterator[str]:
    """The stack's app on a real port, served from the test's own event loop."""
    port = free_port()
    config = uvicorn.Config(
        stack.app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn only has a flag
            await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def _speaker_box(module: str, *args: str) -> tuple[int, str, str]:
    """Run `module` as a command on the "speaker's box": Python without the gateway's modules."""
    code = f"import sys, runpy; sys.argv = {[module, *args]!r}; "
    code += f"runpy.run_module({module!r}, run_name='__main__')"
    process = await asyncio.create_subprocess_exec(
        *python_agent_only(code),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


def _enroll(gateway_url: str, code: str, box: Path) -> list[str]:
    return [
        "maeul.entry",
        "speaker",
        "enroll",
        "--gateway",
        gateway_url,
        "--code",
        code,
        "--config",
        str(box / "etc" / "speaker.toml"),
        "--state-dir",
        str(box / "state"),
        "--no-systemd",
    ]


async def test_an_installer_enrolls_a_speaker_with_its_code(
    stack: Stack, gateway_url: str, tmp_path: Path
) -> None:
    speaker = await _speaker(stack)
    code = await _issue(stack, speaker["id"])
    box = tmp_path / "box"

    status, _, err = await _speaker_box(*_enroll(gateway_url, code, box))
    assert status == 0, err
    config_path = box / "etc" / "speaker.toml"
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
    key_file = box / "state" / "receipt.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    config = load_config(config_path, {})
    assert config.identity.speaker == speaker["code"]
    assert config.speaker.receipt_key_file == key_file
    keys = (await stack.client.get("/api/v1/keys")).json()
    assert set(config.public_keys()) == {k["key_id"] for k in keys}
    password = config.link_settings().password
    assert password is not None
    own = await stack.client.get(
        f"/api/v1/devices/{speaker['code']}/provisioning", headers=_basic(speaker["code"], password)
    )
    assert own.status_code == 200, "the written password is the speaker's"

    # The agent loads what was written, and holds the receipt key the gateway enrolled.
    status, out, err = await _speaker_box(
        "devices.agent", "--config", str(config_path), "--receipt-public-key"
    )
    assert status == 0, err
    async with stack.app.state.sessions() as session:
        row = await session.get(Speaker, speaker["id"])
        assert row is not None
        assert json.loads(out)["public_key"] == row.receipt_public_key
    assert base64.b64decode(row.receipt_public_key or "")

    # Enrolled again with a new code (the service's group reads the file): the box keeps its
    # receipt key and the file its group's access; the old password no longer works.
    config_path.chmod(0o640)
    done = await enroll(
        gateway_url,
        await _issue(stack, speaker["id"]),
        config_path=config_path,
        state_dir=box / "state",
    )
    assert done.receipt_key_enrolled
    assert stat.S_IMODE(config_path.stat().st_mode) == 0o640
    assert load_config(config_path, {}).link_settings().password != password
    stale = await stack.client.get(
        f"/api/v1/devices/{speaker['code']}/provisioning", headers=_basic(speaker["code"], password)
    )
    assert stale.status_code == 401
    async with stack.app.state.sessions() as session:
        again_row = await session.get(Speaker, speaker["id"])
        assert again_row is not None
        assert again_row.receipt_public_key == row.receipt_public_key

    # The first code again: refused, nothing written.
    again = tmp_path / "again"
    status, _, err = await _speaker_box(*_enroll(gateway_url, code, again))
    assert status == 2
    assert "enrollment_code_used" in err
    assert not (again / "etc" / "speaker.toml").exists()
    assert not (again / "state" / "receipt.key").exists()

    # An expired code: refused, nothing written.
    late = await _issue(stack, (await _speaker(stack, 1))["id"])
    stack.clock.advance(stack.settings.enrollment_code_ttl_s + 1)
    status, _, err = await _speaker_box(*_enroll(gateway_url, late, again))
    assert status == 2
    assert "enrollment_code_expired" in err
    assert not (again / "etc" / "speaker.toml").exists()
