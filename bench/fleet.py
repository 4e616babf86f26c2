"""One share of a bench city's simulated devices in a process of its own, as `maeul run` splits a
large fleet: ``python -m bench.fleet GATEWAY_URL MQTT_URL PART PARTS``.

It runs share PART of PARTS (`devices.simulator_config.share_of`) of the gateway's fleet with the
bench's fleet settings, prints ``ready <count>`` once every device is connected, and runs until
SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
from typing import Any

import httpx

from devices.simulator import Fleet
from devices.simulator_config import FleetConfig, SimSpeaker, share_of, sim_speaker
from tests.e2e.harness import TOKEN


def sim_speakers(city: str, items: list[dict[str, Any]]) -> list[SimSpeaker]:
    return [sim_speaker(city, item) for item in items]


async def run_share(
    gateway_url: str, mqtt_url: str, part: int, parts: int, settings: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(
        base_url=gateway_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
    ) as client:
        page = (await client.get("/api/v1/speakers/fleet")).raise_for_status().json()
        keys = (await client.get("/api/v1/keys")).raise_for_status().json()
        city = (await client.get("/api/v1/city")).raise_for_status().json()
    share = share_of(sim_speakers(city["code"], page["items"]), part, parts)
    fleet = Fleet(
        FleetConfig(
            mqtt_url=mqtt_url,
            gateway_url=gateway_url,
            public_keys={k["key_id"]: base64.b64decode(k["public_key"]) for k in keys},
            **settings,
        )
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await fleet.start(share)
    sys.stdout.write(f"ready {len(share)}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await fleet.stop()


def main() -> int:
    gateway_url, mqtt_url, part, parts = sys.argv[1:5]
    settings = json.loads(sys.stdin.readline())
    asyncio.run(run_share(gateway_url, mqtt_url, int(part), int(parts), settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
