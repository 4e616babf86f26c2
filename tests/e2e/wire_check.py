"""Everything that crosses the broker during an end-to-end test, checked against
openapi/asyncapi.yaml: a third client subscribed to the whole topic tree records each message,
and `problems` says which ones the document does not describe."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiomqtt
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from devices.link_settings import BrokerAddress
from wire import contract

ASYNCAPI = Path(__file__).resolve().parents[2] / "openapi" / "asyncapi.yaml"
_DOC_URI = "urn:maeul:asyncapi"
_SEGMENT = "[A-Za-z0-9_-]{1,64}"


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    retain: bool


class WireRecorder:
    """Subscribes to every topic under the contract's root and keeps what it sees."""

    def __init__(self, mqtt_url: str) -> None:
        broker = BrokerAddress.parse(mqtt_url)
        self.seen: list[Seen] = []
        self._client = aiomqtt.Client(
            broker.host,
            broker.port,
            identifier=f"wire-recorder-{secrets.token_hex(4)}",
            username=broker.username,
            password=broker.password,
            protocol=aiomqtt.ProtocolVersion.V5,
            max_inflight_messages=1000,
        )
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        await self._client.subscribe(f"{contract.TOPIC_ROOT}/#", qos=1)
        self._reader = asyncio.create_task(self._read(), name="wire-recorder")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._client.__aexit__(exc_type, exc, tb)

    async def _read(self) -> None:
        async for message in self._client.messages:
            payload = message.payload
            assert isinstance(payload, bytes)
            self.seen.append(Seen(str(message.topic), payload, bool(message.retain)))

    def kinds(self) -> Counter[str]:
        """How many messages of each channel kind (cmd, ack, presence, live) were seen."""
        return Counter(s.topic.split("/")[3] for s in self.seen if s.topic.count("/") >= 3)


class Document:
    """The AsyncAPI document's channels, as topic patterns with the payload schemas they carry."""

    def __init__(self, path: Path = ASYNCAPI) -> None:
        self.doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        registry: Registry[Any] = Registry().with_resource(
            _DOC_URI, Resource(contents=self.doc, specification=DRAFT7)
        )
        self.channels: list[tuple[str, re.Pattern[str], list[tuple[str, Draft7Validator]]]] = []
        messages = self.doc["components"]["messages"]
        for name, channel in self.doc["channels"].items():
            pattern = re.compile(
                "^" + re.sub(r"\\\{\w+\\\}", _SEGMENT, re.escape(channel["address"])) + "$"
            )
            validators = []
            for ref in channel["messages"].values():
                message_id = ref["$ref"].rsplit("/", 1)[1]
                pointer = f"#/components/messages/{message_id}/payload"
                schema_ref = messages[message_id]["payload"]["$ref"]
                validators.append(
                    (
                        schema_ref.rsplit("/", 1)[1],
                        Draft7Validator({"$ref": f"{_DOC_URI}{pointer}"}, registry=registry),
                    )
                )
            self.channels.append((name, pattern, validators))

    def problems(self, seen: Seen) -> list[str]:
        """What is wrong with one message according to the document (nothing: [])."""
        matches = [c for c in self.channels if c[1].match(seen.topic)]
        if len(matches) != 1:
            return [f"{seen.topic}: matches {len(matches)} channels"]
        name, _, validators = matches[0]
        if any(schema == "LiveFrame" for schema, _ in validators):
            return [f"{seen.topic}: {p}" for p in live_frame_problems(seen.payload)]
        if not seen.payload and seen.retain and name == "presence":
            return []  # clears a retained presence, as the presenceWill message says
        try:
            body = json.loads(seen.payload)
        except ValueError:
            return [f"{seen.topic}: not JSON ({seen.payload[:40]!r})"]
        errors = []
        for _, validator in validators:
            found = sorted(validator.iter_errors(body), key=str)
            if not found:
                return []
            errors.append(found[0].message)
        return [f"{seen.topic} ({name}): {errors[0][:300]}"]


def live_frame_problems(data: bytes) -> list[str]:
    """The frame header as the document lays it out (the tag needs the session key)."""
    found = []
    if not contract.LIVE_HEADER_BYTES <= len(data) <= contract.MAX_LIVE_FRAME_BYTES:
        return [f"a live frame of {len(data)} bytes"]
    magic, kind, flags, reserved = data[0], data[1], data[2], data[3]
    if magic != contract.LIVE_MAGIC:
        found.append(f"magic {magic:#x}")
    if kind not in (1, 2, 3):
        found.append(f"kind {kind}")
    if reserved != 0:
        found.append(f"reserved byte {reserved}")
    # An audio frame's flags are all defined: bit 0 starts a spurt, bits 1-7 the capture lag.
    if kind == 3 and flags not in {r.value for r in contract.EndReason}:
        found.append(f"end reason {flags}")
    if kind != 1 and len(data) != contract.LIVE_HEADER_BYTES:
        found.append("a pause or end frame with a payload")
    if kind == 1 and len(data) == contract.LIVE_HEADER_BYTES:
        found.append("an audio frame without audio")
    return found
