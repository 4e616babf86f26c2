"""Learning the gateway's rotated signing keys from its key ring: one rule for every speaker.

A command under a key id the speaker does not trust yet makes it ask for the key ring (at most
once per `KEYRING_EVERY_MS`, and one fetch at a time however many speakers of a fleet ask), then
trust the keys that an already trusted key vouches for (`SignatureCheck.learn`). Only then does
the command reach the core, which refuses it as ``unknown_key`` if its key is still unknown.

Where the ring comes from is pluggable: the device agent and the simulated fleet both fetch it
with `http_keyring` (``GET /api/v1/keys/ring``); a test can hand one over with `static_keyring`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Final

import httpx

from wire import contract

log = logging.getLogger(__name__)

# A command under an unknown key id asks for the key ring at most this often.
KEYRING_EVERY_MS: Final = 60_000
KEYRING_PATH: Final = "/api/v1/keys/ring"
# The key id of a command, found without decoding the whole payload (inline audio can be large):
# searched from the end, where the contract's encoder puts it, after the audio. A JSON string
# value cannot hold an unescaped quote, so this matches only the field itself.
_KEY_ID_NAME: Final = b'"key_id"'
_KEY_ID: Final = re.compile(rb'"key_id"\s*:\s*"([0-9A-Za-z_-]{1,64})"')

FetchRing = Callable[[], Awaitable[contract.KeyRing]]
Remember = Callable[[dict[str, bytes]], Awaitable[None]]


def http_keyring(
    client: httpx.AsyncClient, gateway_url: str, *, timeout_s: float = 10.0
) -> FetchRing:
    """Fetch the key ring from the gateway at `gateway_url`."""
    url = f"{gateway_url.rstrip('/')}{KEYRING_PATH}"

    async def fetch() -> contract.KeyRing:
        response = await client.get(url, timeout=timeout_s)
        response.raise_for_status()
        return contract.decode_keyring(response.content)

    return fetch


def static_keyring(ring: contract.KeyRing) -> FetchRing:
    """Hand over a ring the caller already has (provisioning, a test)."""

    async def fetch() -> contract.KeyRing:
        return ring

    return fetch


def key_id_named(payload: bytes) -> str | None:
    """The ``key_id`` a command payload names, if any."""
    at = payload.rfind(_KEY_ID_NAME)
    match = _KEY_ID.match(payload, at) if at >= 0 else None
    return match[1].decode("ascii") if match is not None else None


class KeyLearner:
    """Extends a `SignatureCheck` with the keys of one city's ring. Shared by every speaker of
    that city in a process: the simulated fleet keeps one, the device agent its own."""

    def __init__(
        self,
        verify: contract.SignatureCheck,
        city: str,
        fetch: FetchRing,
        *,
        clock: Callable[[], int] = contract.now_ms,
        every_ms: int = KEYRING_EVERY_MS,
        remember: Remember | None = None,
    ) -> None:
        self.verify = verify
        self.city = city
        self._fetch = fetch
        self._clock = clock
        self._every_ms = every_ms
        self._remember = remember
        self._asked_ms: int | None = None
        self._inflight: asyncio.Future[dict[str, bytes]] | None = None
        self.fetches = 0

    def wants(self, payload: bytes) -> bool:
        """True when `payload` names a key id not trusted yet and the ring may be asked for now
        (or is being fetched): the caller awaits `learn` before handing the payload on."""
        key_id = key_id_named(payload)
        if key_id is None or self.verify.knows(key_id):
            return False
        if self._inflight is not None:
            return True
        return self._asked_ms is None or self._clock() - self._asked_ms >= self._every_ms

    async def learn(self) -> dict[str, bytes]:
        """Fetch the ring (or join the fetch under way) and trust what a trusted key vouches
        for; returns the newly trusted keys (key id -> raw public key)."""
        if self._inflight is None:
            now = self._clock()
            if self._asked_ms is not None and now - self._asked_ms < self._every_ms:
                return {}
            self._asked_ms = now
            self.fetches += 1
            inflight = asyncio.ensure_future(self._fetch_and_learn())
            self._inflight = inflight
            inflight.add_done_callback(self._done)
        return await asyncio.shield(self._inflight)

    def _done(self, future: asyncio.Future[dict[str, bytes]]) -> None:
        if self._inflight is future:
            self._inflight = None

    async def _fetch_and_learn(self) -> dict[str, bytes]:
        try:
            ring = await self._fetch()
        except Exception as exc:  # the source is pluggable: any failure means "not now"
            log.warning("서명 키 목록을 받지 못함 / could not fetch the key ring: %r", exc)
            return {}
        learned = self.verify.learn(ring, self.city)
        if learned:
            log.info("새 서명 키 %s / learned signing keys", ", ".join(sorted(learned)))
            if self._remember is not None:
                await self._remember(learned)
        return learned
