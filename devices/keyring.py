"""Learning the gateway's rotated signing keys from its key ring: one rule for every speaker.

A command under a key id the speaker does not trust yet is held while the speaker asks for the
key ring, then trusts the keys that an already trusted key vouches for (`SignatureCheck.learn`).
The command reaches the core only after a fetch that started after it arrived has finished, so a
rate limit never refuses it: the core refuses it as ``unknown_key`` only if the ring, asked since,
still does not vouch for its key. Fetches are limited per key id and overall, one at a time
however many speakers of a fleet ask (see `KeyLearner`).

The ring also carries the gateway's revocations: a revoked key is dropped (with any key learned
only through it) and commands under it are refused as ``revoked_key`` at once, without asking
the ring again. A speaker learns a revocation at its next fetch of the ring; the gateway starts a
new key with every revocation, so its next command to the speaker (any broadcast or test) names
a key id the speaker does not know yet, and that fetch happens then.

Where the ring comes from is pluggable: the device agent and the simulated fleet both fetch it
with `http_keyring` (``GET /api/v1/keys/ring``); a test can hand one over with `static_keyring`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Final

import httpx

from wire import contract

log = logging.getLogger(__name__)

# A command under an unknown key id asks for the key ring at most this often per key id,
KEYRING_EVERY_MS: Final = 60_000
# and all key ids together at most `KEYRING_BURST` times per `KEYRING_WINDOW_MS`.
KEYRING_BURST: Final = 3
KEYRING_WINDOW_MS: Final = 10_000
# Commands one speaker holds while it asks; further ones are handed on (and refused) at once.
MAX_HELD: Final = 16
KEYRING_PATH: Final = "/api/v1/keys/ring"
# The key id of a command, found without decoding the whole payload (inline audio can be large):
# searched from the end, where the contract's encoder puts it, after the audio. A JSON string
# value cannot hold an unescaped quote, so this matches only the field itself.
_KEY_ID_NAME: Final = b'"key_id"'
_KEY_ID: Final = re.compile(rb'"key_id"\s*:\s*"([0-9A-Za-z_-]{1,64})"')

FetchRing = Callable[[], Awaitable[contract.KeyRing]]
Remember = Callable[[dict[str, bytes]], Awaitable[None]]
# Told the key ids newly revoked and every key id no longer trusted because of them.
Forget = Callable[[frozenset[str], frozenset[str]], Awaitable[None]]


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
    that city in a process: the simulated fleet keeps one, the device agent its own.

    A command under a key id not trusted yet is held (`settle`) until a fetch of the ring that
    started after the command arrived (or the one under way for that same key id) has finished,
    then handed on whether or not that fetch
    vouched for the key: the core refuses it ``unknown_key`` only then. Fetches are limited per
    key id (one per `every_ms`) and overall (`burst` per `window_ms`), and one fetch serves every
    command held at its start, so a flood of made-up key ids delays a genuine one by at most the
    global window. A speaker holds at most `max_held` commands (beyond that they are handed on at
    once) and none past its expiry.
    """

    def __init__(
        self,
        verify: contract.SignatureCheck,
        city: str,
        fetch: FetchRing,
        *,
        clock: Callable[[], int] = contract.now_ms,
        every_ms: int = KEYRING_EVERY_MS,
        burst: int = KEYRING_BURST,
        window_ms: int = KEYRING_WINDOW_MS,
        max_held: int = MAX_HELD,
        remember: Remember | None = None,
        forget: Forget | None = None,
    ) -> None:
        self.verify = verify
        self.city = city
        self._fetch = fetch
        self._clock = clock
        self._every_ms = every_ms
        self._burst = burst
        self._window_ms = window_ms
        self._max_held = max_held
        self._remember = remember
        self._forget = forget
        # When a fetch was last started for each key id (recent ones only), and the start times
        # of the fetches within the global window.
        self._asked: dict[str, int] = {}
        self._recent: deque[int] = deque()
        self._inflight: asyncio.Future[dict[str, bytes]] | None = None
        self._inflight_key: str | None = None  # the key id the fetch under way was asked for
        # Fetches run one at a time: how many have started, and how many have finished
        # (successfully or not).
        self._started = 0
        self._ended = 0
        self._finished = asyncio.Condition()
        self._held: Counter[str] = Counter()

    @property
    def fetches(self) -> int:
        """How many times the ring was asked for."""
        return self._started

    def unknown(self, payload: bytes) -> bool:
        """True when `payload` names a key id not trusted yet: the caller awaits `settle`
        before handing the payload to the core."""
        key_id = key_id_named(payload)
        return (
            key_id is not None
            and not self.verify.knows(key_id)
            and not self.verify.is_revoked(key_id)
        )

    def held(self, holder: str) -> int:
        """How many commands `holder` (a speaker) holds now."""
        return self._held[holder]

    async def settle(self, payload: bytes, holder: str = "") -> None:
        """Return when `payload` may go to the core: its key is trusted, or a fetch that started
        after it arrived has finished without vouching for it, or it can be held no longer
        (expired, or `holder` already holds `max_held`)."""
        key_id = key_id_named(payload)
        if (
            key_id is None
            or self.verify.knows(key_id)
            or self.verify.is_revoked(key_id)
            or self._held[holder] >= self._max_held
        ):
            return
        # Fetches that began before this command arrived do not count, except the one under way
        # if it was asked for this very key id: an earlier command under it, so signed by then.
        before = self._started
        if self._inflight is not None and self._inflight_key == key_id:
            before -= 1
        until = _expiry_ms(payload)
        self._held[holder] += 1
        try:
            while not self.verify.knows(key_id):
                if self._ended > before:
                    return  # asked since it arrived: the ring does not vouch for its key
                now = self._clock()
                if until is not None and now >= until:
                    return
                if self._inflight is not None:
                    # Started before this command arrived, perhaps: wait for it, then look again.
                    wait_ms = self._every_ms
                else:
                    wait_ms = self._wait_ms(key_id, now)
                    if wait_ms <= 0:
                        # Not awaited here: every held command waits below, in arrival order.
                        self._start(key_id, now)
                        continue
                if until is not None:
                    wait_ms = min(wait_ms, until - now)
                await self._next_fetch(max(wait_ms, 1) / 1000)
        finally:
            self._held[holder] -= 1
            if not self._held[holder]:
                del self._held[holder]

    async def learn(self) -> dict[str, bytes]:
        """Fetch the ring now, whatever the limits (provisioning, a test), and trust what a
        trusted key vouches for; returns the newly trusted keys (key id -> raw public key)."""
        return await asyncio.shield(self._start(None, self._clock()))

    def _wait_ms(self, key_id: str, now: int) -> int:
        """How long until a fetch for `key_id` is allowed (0 or less: now)."""
        while self._recent and now - self._recent[0] >= self._window_ms:
            self._recent.popleft()
        wait = 0
        if len(self._recent) >= self._burst:
            wait = self._recent[0] + self._window_ms - now
        asked = self._asked.get(key_id)
        if asked is not None:
            wait = max(wait, asked + self._every_ms - now)
        return wait

    def _start(self, key_id: str | None, now: int) -> asyncio.Future[dict[str, bytes]]:
        """The fetch under way, or a new one started now (asked for `key_id`)."""
        if self._inflight is None:
            if key_id is not None:
                self._asked = {k: at for k, at in self._asked.items() if now - at < self._every_ms}
                self._asked[key_id] = now
            self._recent.append(now)
            self._started += 1
            self._inflight_key = key_id
            self._inflight = asyncio.ensure_future(self._fetch_and_learn())
        return self._inflight

    async def _next_fetch(self, timeout_s: float) -> None:
        """Wait until a fetch finishes, at most `timeout_s`."""
        async with self._finished:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), timeout_s)

    async def _fetch_and_learn(self) -> dict[str, bytes]:
        try:
            learned = await self._fetch_ring()
        finally:
            self._ended += 1
            self._inflight = None
            async with self._finished:
                self._finished.notify_all()
        return learned

    async def _fetch_ring(self) -> dict[str, bytes]:
        try:
            ring = await self._fetch()
        except Exception as exc:  # the source is pluggable: any failure means "not now"
            log.warning("서명 키 목록을 받지 못함 / could not fetch the key ring: %r", exc)
            return {}
        trusted, revoked = self.verify.trusted, self.verify.revoked
        learned = self.verify.learn(ring, self.city)
        newly_revoked = self.verify.revoked - revoked
        if newly_revoked:
            dropped = trusted - self.verify.trusted
            log.warning(
                "폐기된 서명 키 %s / revoked signing keys, no longer trusted: %s",
                ", ".join(sorted(newly_revoked)),
                ", ".join(sorted(dropped)) or "-",
            )
            if self._forget is not None:
                await self._forget(newly_revoked, dropped)
        if learned:
            log.info("새 서명 키 %s / learned signing keys", ", ".join(sorted(learned)))
            if self._remember is not None:
                await self._remember(learned)
        return learned


def _expiry_ms(payload: bytes) -> int | None:
    """The command's ``expires_at_ms`` (None when it does not decode: the core refuses it)."""
    try:
        return contract.decode_command(payload).expires_at_ms
    except ValueError:
        return None
