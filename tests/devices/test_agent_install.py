"""A speaker's install: the agent and `maeul speaker` without the gateway's dependencies, the
systemd unit with its watchdog, and the agent telling systemd it is ready and alive."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from devices import enroll, sdnotify
from devices.agent import serve
from devices.agent_config import AgentConfig
from tests.support.agent_only import ROOT, gateway_modules, pyproject, python_agent_only


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_the_speakers_dependencies_leave_the_gateway_out() -> None:
    project = pyproject()["project"]
    assert isinstance(project, dict)
    base = " ".join(project["dependencies"]).lower()
    for name in ("fastapi", "sqlalchemy", "uvicorn", "alembic", "asyncpg"):
        assert name not in base, f"{name} would be installed on every speaker"
    assert "agent" in project["optional-dependencies"]
    assert {"fastapi", "sqlalchemy", "gateway"} <= set(gateway_modules())


def test_the_agent_and_maeul_speaker_run_without_the_gateways_modules(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        try:
            import fastapi
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("the gateway's modules are not refused")
        import devices.agent, devices.enroll, maeul.speaker
        assert devices.agent.main(["--example-config"]) == 0
        sys.argv = ["maeul", "speaker", "enroll", "--help"]
        from maeul.entry import main
        try:
            main()
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        """
    )
    done = subprocess.run(
        python_agent_only(code),
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "[speaker]" in done.stdout
    assert "--gateway" in done.stdout


def test_the_unit_runs_the_agent_under_a_watchdog() -> None:
    unit = enroll.render_unit(
        python="/opt/maeul/venv/bin/python", config_path=Path("/etc/maeul/speaker.toml")
    )
    lines = unit.splitlines()
    assert "Type=notify" in lines
    assert "Restart=always" in lines
    assert any(line.startswith("WatchdogSec=") for line in lines)
    assert (
        "ExecStart=/opt/maeul/venv/bin/python -m devices.agent --config /etc/maeul/speaker.toml"
        in lines
    )
    assert "StateDirectory=maeul" in lines
    elsewhere = enroll.render_unit(
        python="/usr/bin/python3", config_path=Path("/srv/speaker.toml"), state_dir=Path("/srv/s")
    )
    assert "ReadWritePaths=/srv/s" in elsewhere.splitlines()
    assert "StateDirectory=" not in elsewhere
    # The unit shipped in deploy/ is this one.
    shipped = ROOT / "deploy" / "systemd" / enroll.UNIT_NAME
    assert shipped.read_text(encoding="utf-8") == (
        ROOT / "devices" / "systemd" / enroll.UNIT_NAME
    ).read_text(encoding="utf-8")


def test_without_root_the_installer_is_told_what_to_run(tmp_path: Path) -> None:
    steps = enroll.manual_steps(tmp_path / enroll.UNIT_NAME, tmp_path / "speaker.toml")
    assert f"sudo install -m 0644 {tmp_path / enroll.UNIT_NAME} /etc/systemd/system/" in " ".join(
        steps
    )
    assert steps[-1] == f"sudo systemctl enable --now {enroll.UNIT_NAME}"


def _listen(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    return sock


def test_notify_sends_one_datagram_to_the_socket_systemd_names(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with _listen(path) as sock:
        assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert sock.recv(100) == b"READY=1"
    assert not sdnotify.notify("READY=1", {})
    name = f"maeul-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as abstract:
        abstract.bind("\0" + name)
        assert sdnotify.notify("WATCHDOG=1", {"NOTIFY_SOCKET": "@" + name})
        assert abstract.recv(100) == b"WATCHDOG=1"
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval_s({}) is None


async def test_the_agent_tells_systemd_it_is_ready_alive_and_stopping(
    mqtt_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    config = AgentConfig.model_validate(
        {
            "broker": {"url": mqtt_url},
            "speaker": {"city": "wd", "district": "d1", "village": "v1", "id": "wd-s1"},
            "journal": {"path": str(tmp_path / "journal.sqlite")},
        }
    )
    loop = asyncio.get_running_loop()
    with _listen(path) as sock:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(config, stop))
        seen: list[bytes] = []
        async with asyncio.timeout(15):
            while seen.count(b"WATCHDOG=1") < 2:
                seen.append(await loop.sock_recv(sock, 200))
            stop.set()
            await task
            while seen[-1] != b"STOPPING=1":
                seen.append(await loop.sock_recv(sock, 200))
    assert seen[0].startswith(b"READY=1\nSTATUS=")
