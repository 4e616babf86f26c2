"""The speaker agent's configuration: a TOML file, then ``MAEUL_AGENT_<SECTION>_<KEY>``
environment variables, which win; and the speaker's receipt key on disk.

Lists and tables in the environment are JSON; a player command may also be a shell-style
string. `example_config` prints a commented example.

Exceptions::

    ConfigError     the configuration file or environment is not usable
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shlex
import ssl
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from devices.lead import LEAD
from devices.link_settings import BrokerAddress, LinkSettings, tls_context
from wire import contract
from wire.contract import Codec

log = logging.getLogger(__name__)

ENV_PREFIX: Final = "MAEUL_AGENT_"
DEFAULT_PLAYER: Final = ("aplay", "-q", "-t", "raw", "-f", "S16_LE", "-r", "16000", "-c", "1", "-")


class ConfigError(Exception):
    """The configuration file or environment is not usable."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerConfig(_Section):
    url: str = Field(description="mqtt://host:1883 or mqtts://host:8883")
    username: str | None = None  # defaults to the speaker id when a password is set
    password: SecretStr | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None  # TLS client certificate, instead of (or with) a password
    key_file: Path | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    session_expiry_s: int = Field(default=3600, ge=0)
    heartbeat_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=15.0, gt=0)


class SpeakerConfig(_Section):
    city: str
    district: str
    village: str
    id: str
    codecs: tuple[Codec, ...] = (Codec.OPUS, Codec.MP3)
    firmware: str | None = "maeul-agent/1"
    # An indoor receiver asks the gateway for its household's volume and quiet-hours hold.
    kind: Literal["loudspeaker", "household_receiver"] = "loudspeaker"
    # This speaker's own Ed25519 receipt key (base64 of the raw 32-byte private key), made on
    # the first start when the file does not exist; `--receipt-public-key` prints the public
    # half to enroll with the gateway. Without it, played acks carry no signed receipt.
    receipt_key_file: Path | None = None


class JournalConfig(_Section):
    path: Path = Path("/var/lib/maeul/journal.sqlite")


class GatewayConfig(_Section):
    url: str | None = None  # audio is fetched only from this origin, with the token
    token: SecretStr | None = None
    # key id -> base64 of a raw 32-byte Ed25519 public key; when any is set, unsigned
    # commands and commands with a bad signature are rejected.
    public_keys: dict[str, str] = Field(default_factory=dict)


class PlayerConfig(_Section):
    command: tuple[str, ...] = Field(default=DEFAULT_PLAYER, min_length=1)
    sample_rate: int = Field(default=16000, ge=8000, le=48000)
    # How far ahead of real time a live talk is fed to the player at first (it grows by itself
    # when the board cannot keep up): raise it for a player that needs a fuller buffer.
    live_lead_ms: int = Field(default=LEAD.floor_ms, ge=LEAD.floor_ms, le=LEAD.ceiling_ms)


class AgentConfig(_Section):
    broker: BrokerConfig
    speaker: SpeakerConfig
    journal: JournalConfig = JournalConfig()
    gateway: GatewayConfig = GatewayConfig()
    player: PlayerConfig = PlayerConfig()

    @property
    def identity(self) -> contract.SpeakerIdentity:
        s = self.speaker
        return contract.SpeakerIdentity(
            city=s.city, district=s.district, village=s.village, speaker=s.id
        )

    def public_keys(self) -> dict[str, bytes]:
        keys = {}
        for key_id, text in self.gateway.public_keys.items():
            try:
                raw = base64.b64decode(text, validate=True)
            except binascii.Error as exc:
                raise ConfigError(f"gateway.public_keys.{key_id} is not base64") from exc
            if len(raw) != 32:
                raise ConfigError(f"gateway.public_keys.{key_id} is not a 32-byte Ed25519 key")
            keys[key_id] = raw
        return keys

    def link_settings(self) -> LinkSettings:
        b = self.broker
        broker = BrokerAddress.parse(b.url)
        password = b.password.get_secret_value() if b.password is not None else None
        username = b.username or (self.speaker.id if password is not None else None)
        tls = None
        if broker.tls:
            try:
                tls = tls_context(
                    ca_file=str(b.ca_file) if b.ca_file else None,
                    cert_file=str(b.cert_file) if b.cert_file else None,
                    key_file=str(b.key_file) if b.key_file else None,
                )
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the broker's TLS files: {exc}") from exc
        return LinkSettings(
            broker=broker,
            username=username,
            password=password,
            tls=tls,
            keepalive_s=b.keepalive_s,
            session_expiry_s=b.session_expiry_s,
            heartbeat_s=b.heartbeat_s,
            connect_timeout_s=b.connect_timeout_s,
            firmware=self.speaker.firmware,
        )


def load_receipt_key(path: Path) -> bytes:
    """The speaker's receipt key from `path`, made there (mode 0600) when the file is missing."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        private, _ = contract.new_receipt_key()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(base64.b64encode(private).decode("ascii") + "\n")
        log.info("수신 확인 서명 키 생성 / receipt key made at %s", path)
        return private
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot read the receipt key {path}: {exc}") from exc
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ConfigError(f"the receipt key {path} is not base64") from exc
    if len(raw) != 32:
        raise ConfigError(f"the receipt key {path} is not a raw 32-byte Ed25519 key")
    return raw


def _env_value(raw: str) -> Any:
    text = raw.strip()
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not valid JSON: {text[:60]!r}") from exc
    return raw


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """The TOML file at `path` (if any), overridden by MAEUL_AGENT_<SECTION>_<KEY> variables."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
    from_env: dict[tuple[str, str], str] = {}  # (section, key) -> the variable that set it
    for section, info in AgentConfig.model_fields.items():
        model = info.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        for key in model.model_fields:
            name = f"{ENV_PREFIX}{section}_{key}".upper()
            if name not in environ:
                continue
            value = _env_value(environ[name])
            if isinstance(value, str) and key in ("command", "codecs"):
                try:
                    value = (
                        shlex.split(value) if key == "command" else value.replace(",", " ").split()
                    )
                except ValueError as exc:  # an unclosed quote
                    raise ConfigError(f"{name}: {exc}") from None
            data.setdefault(section, {})[key] = value
            from_env[section, key] = name
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        variable = from_env.get(tuple(str(part) for part in first["loc"][:2]))  # type: ignore[arg-type]
        if variable is not None:
            where = f"{variable} ({where})"
        raise ConfigError(f"configuration: {where}: {first['msg']}") from None


def example_config() -> str:
    return """\
# Maeul speaker agent. Secrets may come from the environment instead:
# MAEUL_AGENT_BROKER_PASSWORD, MAEUL_AGENT_GATEWAY_TOKEN.
[broker]
url = "mqtts://broker.example.go.kr:8883"
# username defaults to the speaker id
password = "change-me"
ca_file = "/etc/maeul/ca.pem"
# or a client certificate:
# cert_file = "/etc/maeul/speaker.crt"
# key_file = "/etc/maeul/speaker.key"

[speaker]
city = "jinju"
district = "d01"
village = "d01-v001"
id = "d01-v001-s1"
codecs = ["opus", "mp3"]
# made on the first start; enroll its public half (--receipt-public-key) with the gateway
receipt_key_file = "/var/lib/maeul/receipt.key"

[journal]
path = "/var/lib/maeul/journal.sqlite"

[gateway]
url = "https://maeul.example.go.kr"
token = "change-me"
public_keys = { k1 = "base64 of the gateway's Ed25519 public key" }

[player]
# Reads 16-bit mono PCM at sample_rate on stdin: a recording whole, a live talk as a stream.
# MAEUL_AGENT_PLAYER_COMMAND (a shell-style string) overrides it, e.g. to name the ALSA device:
# "aplay -D plughw:1,0 -q -t raw -f S16_LE -r 16000 -c 1 -"
command = ["aplay", "-q", "-t", "raw", "-f", "S16_LE", "-r", "16000", "-c", "1", "-"]
sample_rate = 16000
# Milliseconds of a live talk fed ahead of real time at first (40-300; or
# MAEUL_AGENT_PLAYER_LIVE_LEAD_MS); grows when the board falls behind.
live_lead_ms = 40
"""
