"""`maeul run` says whether quiet hours are in force now, runs every seeded speaker split over
the simulator processes asked for, and stops everything it started when it gets SIGTERM (what
`kill` and a service manager send), even when the terminal or pipe its log went to is already
gone: the broker, Kannel's bearerbox, smsbox and fake SMSC, and the simulated speakers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BOUND_S = 120  # generous: a loaded machine; the test waits for states, not time
TINY_SPEAKERS = 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _online_within(port: int, token: str, wanted: int) -> int:
    """Speakers online once `wanted` are, or after BOUND_S."""
    online = 0
    deadline = time.monotonic() + BOUND_S
    with httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
    ) as client:
        while online < wanted and time.monotonic() < deadline:
            response = client.get("/api/v1/speakers", params={"online": "true", "limit": 1})
            online = int(response.json()["total"])
            time.sleep(0.2)
    return online


def test_sigterm_stops_run_and_everything_it_started(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "MAEUL_"))}
    env["GATEWAY_DATA_DIR"] = str(tmp_path / "var")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # where the CLI's login is kept
    port = _free_port()
    run = subprocess.Popen(
        [
            *(sys.executable, "-m", "maeul.cli", "run", "--port", str(port)),
            *("--preset", "tiny", "--simulators", "2"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    children: dict[int, str] = {}
    try:
        assert run.stderr is not None
        said = b""
        deadline = time.monotonic() + BOUND_S
        while "끝내려면".encode() not in said and time.monotonic() < deadline:
            chunk = run.stderr.read1(65536)
            if not chunk:
                break
            said += chunk
        banner = said.decode(errors="replace")
        assert "끝내려면" in banner, banner
        # The banner says whether quiet hours hold the README's first example now.
        assert (
            "지금이 방송 금지 시간입니다" in banner or "지금은 방송 금지 시간이 아닙니다" in banner
        )
        children = _children(run.pid)
        commands = " ".join(children.values())
        for name in ("mosquitto", "bearerbox", "smsbox", "fakesmsc"):
            assert name in commands, (name, children)
        simulators = sorted(c for c in children.values() if "maeul.cli simulate" in c)
        assert len(simulators) == 2, children
        assert "--part 0 --parts 2" in simulators[0]
        assert "--part 1 --parts 2" in simulators[1]
        # Each process runs its share, each speaker logged in as itself: all are online.
        token = (tmp_path / "var" / "api-token").read_text().strip()
        assert _online_within(port, token, TINY_SPEAKERS) == TINY_SPEAKERS

        # Whoever sends SIGTERM often ended the terminal or the pipe the log went to as well.
        run.stderr.close()
        run.send_signal(signal.SIGTERM)
        assert run.wait(BOUND_S) == 0
        deadline = time.monotonic() + BOUND_S
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [cmd for pid, cmd in children.items() if _alive(pid)]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
