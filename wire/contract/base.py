"""What every part of the wire contract shares: version, limits, QoS, the payload base and codec."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROTOCOL_VERSION: Final = 1
TOPIC_ROOT: Final = "maeul/v1"
SHARE_GROUP: Final = "maeul-gateway"

MAX_COMMAND_BYTES: Final = 4 * 1024 * 1024
MAX_ACK_BYTES: Final = 4 * 1024
MAX_PRESENCE_BYTES: Final = 4 * 1024
# Clocks on speakers drift; a command issued up to this far in the future is still accepted.
CLOCK_SKEW_MS: Final = 30_000


class WireError(ValueError):
    """A payload or topic that does not follow the contract."""


class Qos(IntEnum):
    AT_MOST_ONCE = 0
    AT_LEAST_ONCE = 1


COMMAND_QOS: Final = Qos.AT_LEAST_ONCE
ACK_QOS: Final = Qos.AT_LEAST_ONCE
PRESENCE_QOS: Final = Qos.AT_LEAST_ONCE
HEARTBEAT_QOS: Final = Qos.AT_MOST_ONCE


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Segment = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
CommandId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]

_M = TypeVar("_M", bound=BaseModel)


def _dump(message: BaseModel) -> bytes:
    return message.model_dump_json(exclude_none=True).encode()


def _load(model: type[_M], payload: bytes, limit: int) -> _M:
    if len(payload) > limit:
        raise WireError(f"{model.__name__} payload of {len(payload)} bytes exceeds {limit}")
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
        raise WireError(f"invalid {model.__name__}: {where}: {first.get('msg')}") from None


def new_id() -> str:
    return secrets.token_hex(16)


def new_nonce() -> str:
    return secrets.token_hex(12)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def describe(payload: Mapping[str, Any]) -> str:
    """A short, log-safe description of a payload (never inline audio or signatures)."""
    keep = ("type", "id", "command_id", "broadcast_id", "speaker", "status", "reason")
    return " ".join(f"{k}={payload[k]}" for k in keep if k in payload)


@dataclass(frozen=True, slots=True)
class MessageDocs:
    """How the AsyncAPI document presents one kind of message: its title, a one-line summary and
    a Markdown description."""

    title: str
    summary: str
    description: str
