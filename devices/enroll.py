"""Enrolling a real speaker with a one-time code: what ``maeul speaker enroll`` does.

1. Check that the configuration file and the state directory can be written, before the code
   is spent.
2. Take the speaker's receipt key from the state directory, or make a new one (kept in memory
   until the gateway has taken it): only its public half, with a proof of possession bound to
   the code, goes to the gateway.
3. Redeem the code (``POST /api/v1/enrollment/redeem``): the answer holds the speaker's broker
   password and its provisioning document (identity, broker, session settings, key ring).
4. Write the receipt key (mode 0600, when new) and the agent's configuration (mode 0600,
   written beside and renamed into place, so it is whole or absent).

A code that is wrong, used or expired, or a gateway that cannot be reached, stops at step 3 with
the gateway's reason and nothing written. `render_unit` and `install_unit` put the agent under
systemd (``maeul-speaker.service``, shipped in ``deploy/systemd/``).

Exceptions::

    EnrollError     enrollment did not happen, or did not finish (the message says which)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Final

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from devices.agent_config import ConfigError, load_config, load_receipt_key
from wire import contract

DEFAULT_CONFIG: Final = Path("/etc/maeul/speaker.toml")
DEFAULT_STATE_DIR: Final = Path("/var/lib/maeul")
RECEIPT_KEY_NAME: Final = "receipt.key"
JOURNAL_NAME: Final = "journal.sqlite"
UNIT_NAME: Final = "maeul-speaker.service"
UNIT_DIR: Final = Path("/etc/systemd/system")
SERVICE_USER: Final = "maeul"
REDEEM_PATH: Final = "/api/v1/enrollment/redeem"
KEYRING_PATH: Final = "/api/v1/keys/ring"


class EnrollError(Exception):
    """Enrollment did not happen, or did not finish; the message says which and why."""


class Redeemed(BaseModel):
    """The gateway's answer to a redeemed code."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    speaker_id: int
    password: str
    receipt_key_enrolled: bool
    provisioning: contract.Provisioning


@dataclass(frozen=True)
class Enrolled:
    config_path: Path
    identity: contract.SpeakerIdentity
    receipt_key_file: Path
    receipt_key_enrolled: bool


def _writable(directory: Path, ko: str, en: str) -> None:
    """Make `directory` and check a file can be created in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".maeul-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise EnrollError(
            f"{ko}({directory})에 쓸 수 없습니다. root로 실행하거나 다른 경로를 지정하세요 / "
            f"cannot write {en} {directory} ({exc.strerror}): run as root or choose another path"
        ) from None


async def redeem(
    http: httpx.AsyncClient, gateway_url: str, code: str, receipt_key: bytes
) -> Redeemed:
    """Redeem `code` at the gateway, enrolling the public half of `receipt_key` with it."""
    normalized = contract.normalize_enrollment_code(code)
    if normalized is None:
        raise EnrollError(
            "설치 코드는 영문과 숫자 16자입니다(예: 7K2M-QX9D-4HRT-B1VE) / an enrollment code is "
            "16 letters and digits, like 7K2M-QX9D-4HRT-B1VE"
        )
    body = {"code": normalized, **contract.enrollment_key_proof(receipt_key, normalized)}
    try:
        response = await http.post(gateway_url.rstrip("/") + REDEEM_PATH, json=body)
    except httpx.HTTPError as exc:
        raise EnrollError(
            f"게이트웨이({gateway_url})에 연결할 수 없습니다 / cannot reach the gateway at "
            f"{gateway_url}: {exc!r}"
        ) from None
    if response.status_code != 200:
        try:
            error = response.json()
            reason = f"{error['detail']} ({error['error']})"
        except (ValueError, KeyError, TypeError):
            reason = f"HTTP {response.status_code}"
        raise EnrollError(f"게이트웨이가 설치 코드를 거절했습니다 / the gateway refused: {reason}")
    try:
        return Redeemed.model_validate_json(response.content)
    except ValidationError:
        raise EnrollError(
            "게이트웨이의 응답이 설치 정보가 아닙니다 / the gateway's answer is not an enrollment"
        ) from None


def _toml(value: str) -> str:
    # A JSON string (ASCII, escaped) is a TOML basic string.
    return json.dumps(value)


def render_config(redeemed: Redeemed, *, state_dir: Path) -> str:
    """The agent's TOML configuration from a redeemed code."""
    p = redeemed.provisioning
    identity = p.identity
    # Commands carry audio links on the gateway's public origin: the agent fetches only there.
    origin = p.keyring_url.removesuffix(KEYRING_PATH)
    keys = ", ".join(f"{_toml(k.key_id)} = {_toml(k.public_key)}" for k in p.keyring.keys)
    return "\n".join(
        [
            "# Maeul speaker agent, written by `maeul speaker enroll`. Holds the speaker's broker",
            "# password: keep it readable by the agent only. The player and anything else can be",
            "# overridden by MAEUL_AGENT_<SECTION>_<KEY> variables (MAEUL_AGENT_PLAYER_COMMAND).",
            "[broker]",
            f"url = {_toml(p.broker_url)}",
            f"username = {_toml(p.username)}",
            f"password = {_toml(redeemed.password)}",
            f"keepalive_s = {p.keepalive_s}",
            f"session_expiry_s = {p.session_expiry_s}",
            f"heartbeat_s = {p.heartbeat_s}",
            "",
            "[speaker]",
            f"city = {_toml(identity.city)}",
            f"district = {_toml(identity.district)}",
            f"village = {_toml(identity.village)}",
            f"id = {_toml(identity.speaker)}",
            *([f"kind = {_toml('household_receiver')}"] if p.receiver is not None else []),
            f"receipt_key_file = {_toml(str(state_dir / RECEIPT_KEY_NAME))}",
            "",
            "[journal]",
            f"path = {_toml(str(state_dir / JOURNAL_NAME))}",
            "",
            "[gateway]",
            f"url = {_toml(origin)}",
            f"public_keys = {{ {keys} }}",
            "",
        ]
    )


def _write_atomic(path: Path, text: str, mode: int) -> None:
    """Write `path` whole or not at all. A file already there keeps its group, and its mode up
    to `mode` plus group read: a configuration the service's group reads stays readable to it."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with contextlib.suppress(FileNotFoundError):
            before = path.stat()
            os.fchown(fd, -1, before.st_gid)
            mode = stat.S_IMODE(before.st_mode) & (mode | 0o040)  # group read at most
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


@dataclass(frozen=True)
class _Prepared:
    config_path: Path
    state_dir: Path
    key_file: Path
    receipt_key: bytes
    made: bool  # the receipt key is new, not yet on disk


def _prepare(config_path: Path, state_dir: Path) -> _Prepared:
    """Check where the files go, and take (or make, in memory) the receipt key."""
    config_path, state_dir = config_path.absolute(), state_dir.absolute()
    _writable(config_path.parent, "설정 디렉터리", "the configuration directory")
    _writable(state_dir, "상태 디렉터리", "the state directory")
    key_file = state_dir / RECEIPT_KEY_NAME
    made = not key_file.exists()
    try:
        receipt_key = contract.new_receipt_key()[0] if made else load_receipt_key(key_file)
    except ConfigError as exc:
        raise EnrollError(f"수신 확인 키를 읽을 수 없습니다 / {exc}") from None
    return _Prepared(config_path, state_dir, key_file, receipt_key, made)


def _write(prepared: _Prepared, redeemed: Redeemed) -> None:
    try:
        if prepared.made:
            key_text = base64.b64encode(prepared.receipt_key).decode("ascii") + "\n"
            _write_atomic(prepared.key_file, key_text, 0o600)
        config = render_config(redeemed, state_dir=prepared.state_dir)
        _write_atomic(prepared.config_path, config, 0o600)
        load_config(prepared.config_path, {})
    except (OSError, ConfigError) as exc:
        raise EnrollError(
            "설치 코드는 사용되었지만 설정을 쓰지 못했습니다. 새 코드로 다시 설치하세요 / the code "
            f"was redeemed but the configuration could not be written ({exc}); enroll again "
            "with a new code"
        ) from None


async def enroll(
    gateway_url: str,
    code: str,
    *,
    config_path: Path = DEFAULT_CONFIG,
    state_dir: Path = DEFAULT_STATE_DIR,
    http: httpx.AsyncClient | None = None,
) -> Enrolled:
    """Redeem `code` at `gateway_url` and write the agent's configuration (module docstring)."""
    if not gateway_url.startswith(("https://", "http://")):
        raise EnrollError(
            "게이트웨이 주소는 https://로 시작해야 합니다 / the gateway URL must start with "
            "https:// (or http://)"
        )
    prepared = await asyncio.to_thread(_prepare, config_path, state_dir)
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
        redeemed = await redeem(http, gateway_url, code, prepared.receipt_key)
    await asyncio.to_thread(_write, prepared, redeemed)
    return Enrolled(
        config_path=prepared.config_path,
        identity=redeemed.provisioning.identity,
        receipt_key_file=prepared.key_file,
        receipt_key_enrolled=redeemed.receipt_key_enrolled,
    )


# --------------------------------------------------------------------------------------------
# systemd


def render_unit(*, python: str, config_path: Path, state_dir: Path = DEFAULT_STATE_DIR) -> str:
    """The shipped unit, running `python` on `config_path` (and writing to `state_dir`)."""
    text = resources.files("devices").joinpath("systemd", UNIT_NAME).read_text(encoding="utf-8")

    def quoted(value: str) -> str:
        return f'"{value}"' if any(c.isspace() for c in value) else value

    command = f"ExecStart={quoted(python)} -m devices.agent --config {quoted(str(config_path))}"
    text = re.sub(r"^ExecStart=.*$", lambda _: command, text, count=1, flags=re.MULTILINE)
    if state_dir != DEFAULT_STATE_DIR:
        text = re.sub(
            r"^StateDirectory=.*\nStateDirectoryMode=.*$",
            lambda _: f"ReadWritePaths={quoted(str(state_dir))}",
            text,
            count=1,
            flags=re.MULTILINE,
        )
    return text


def _user_exists() -> bool:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        return False
    return True


ADD_USER: Final = (
    "useradd",
    "--system",
    "--user-group",
    "--no-create-home",
    "--home-dir",
    str(DEFAULT_STATE_DIR),
    "--shell",
    "/usr/sbin/nologin",
    SERVICE_USER,
)


def manual_steps(unit_file: Path, config_path: Path) -> list[str]:
    """What a root shell runs to install the unit written to `unit_file`."""
    steps = [] if _user_exists() else ["sudo " + " ".join(ADD_USER)]
    return [
        *steps,
        f"sudo chgrp {SERVICE_USER} {config_path} && sudo chmod 0640 {config_path}",
        f"sudo install -m 0644 {unit_file} {UNIT_DIR / UNIT_NAME}",
        "sudo systemctl daemon-reload",
        f"sudo systemctl enable --now {UNIT_NAME}",
    ]


def _run(command: Sequence[str]) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        raise EnrollError(
            f"설정은 저장했지만 서비스를 설치하지 못했습니다 / the configuration is written, but "
            f"`{' '.join(command)}` failed: {detail}"
        ) from None


def install_unit(unit_text: str, config_path: Path, *, unit_dir: Path = UNIT_DIR) -> Path:
    """As root: the service's user, the configuration readable by it, the unit, and the
    service enabled and (re)started. Returns the unit's path."""
    if not _user_exists():
        _run(ADD_USER)
    try:
        shutil.chown(config_path, group=SERVICE_USER)
        os.chmod(config_path, 0o640)
        unit_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(unit_dir / UNIT_NAME, unit_text, 0o644)
    except OSError as exc:
        raise EnrollError(
            f"설정은 저장했지만 서비스를 설치하지 못했습니다 / the configuration is written, but "
            f"the unit could not be installed: {exc}"
        ) from None
    _run(("systemctl", "daemon-reload"))
    _run(("systemctl", "enable", UNIT_NAME))
    _run(("systemctl", "restart", UNIT_NAME))
    return unit_dir / UNIT_NAME
