"""Watches every ack and command from its own process and reports when a broadcast completes."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
import uuid
from dataclasses import dataclass, field

import aiomqtt

from gateway.settings import MqttTarget


@dataclass
class _Tally:
    received: set[str] = field(default_factory=set)
    played: set[str] = field(default_factory=set)
    received_at: float | None = None


def _emit(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


async def observe(mqtt_url: str, expected: int) -> None:
    """A plain (non-shared) subscription: it sees every ack without taking any from the gateway.

    Prints ``ready``, then ``cmd <broadcast id> <topic> <base64 payload>`` for every play
    command and ``done <broadcast id> <received at> <played at>`` (time.perf_counter, the
    system's monotonic clock) once `expected` speakers acked received and played.
    """
    target = MqttTarget(mqtt_url)
    tallies: dict[str, _Tally] = {}
    async with aiomqtt.Client(
        target.host,
        target.port,
        protocol=aiomqtt.ProtocolVersion.V5,
        identifier=f"bench-observer-{uuid.uuid4().hex[:8]}",
    ) as client:
        await client.subscribe("maeul/v1/+/ack/+", qos=1)
        await client.subscribe("maeul/v1/+/cmd/#", qos=1)
        _emit("ready")
        async for message in client.messages:
            now = time.perf_counter()
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                continue
            topic = message.topic.value
            body = json.loads(payload)
            if "/ack/" not in topic:
                if body.get("type") == "play":
                    encoded = base64.b64encode(payload).decode()
                    _emit("cmd", body["broadcast_id"], topic, encoded)
                continue
            tally = tallies.setdefault(body["broadcast_id"], _Tally())
            if body["status"] == "received":
                tally.received.add(body["speaker"])
                if tally.received_at is None and len(tally.received) >= expected:
                    tally.received_at = now
            elif body["status"] == "played" and len(tally.played) < expected:
                tally.played.add(body["speaker"])
                if len(tally.played) >= expected:
                    _emit("done", body["broadcast_id"], tally.received_at, now)


def main() -> int:
    asyncio.run(observe(sys.argv[1], int(sys.argv[2])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
