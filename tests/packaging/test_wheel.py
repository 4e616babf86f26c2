"""The package installs: a wheel built from the checkout, installed into a new virtualenv away
from the source tree, migrates a new database and serves the API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    """The environment without what points Python at the checkout or the test's own venv."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("GATEWAY_")
    }


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env if env is not None else _clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        cwd=out,
    )
    (built,) = out.glob("maeul-*.whl")
    return built


def test_the_wheel_carries_the_migrations_and_the_pages(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    revisions = sorted(p.name for p in (ROOT / "alembic" / "versions").glob("*.py"))
    assert "gateway/_migrations/env.py" in names
    assert "gateway/_migrations/script.py.mako" in names
    assert {f"gateway/_migrations/versions/{r}" for r in revisions} <= names
    assert "gateway/web/static/console.html" in names
    assert not any(n.startswith(("tests/", "bench/", "alembic/")) for n in names)


def test_an_installed_wheel_migrates_and_serves(wheel: Path, tmp_path: Path, mqtt_url: str) -> None:
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", "-q", f"{wheel}[gateway]"], cwd=tmp_path)
    maeul = str(venv / "bin" / "maeul")
    # Nothing of the checkout on the path: the installed package alone.
    env = {
        **_clean_env(),
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        "GATEWAY_ENVIRONMENT": "development",
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}",
        "GATEWAY_MQTT_URL": mqtt_url,
    }
    assert _run([maeul, "--version"], cwd=tmp_path, env=env).startswith("maeul ")
    located = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import gateway.migrations as m; print(m.script_location())",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert str(venv) in located, located
    _run([maeul, "db", "upgrade"], cwd=tmp_path, env=env)
    port = free_port()
    server = subprocess.Popen(
        [maeul, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready = None
        for _ in range(600):
            if server.poll() is not None:
                break
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert ready is not None, server.stdout and server.stdout.read()
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"] is True
        page = httpx.get(f"http://127.0.0.1:{port}/console", timeout=5)
        assert page.status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
        if server.stdout is not None:
            server.stdout.close()
