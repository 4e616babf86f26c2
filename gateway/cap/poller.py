"""Polling the configured CAP feeds (GATEWAY_CAP_FEEDS): each feed is claimed in the database
so that one replica polls it per turn, its new entries are taken in as their sender, once.

A feed's answer is a CAP alert, or an Atom feed whose entries carry one inline (`<content
type="application/cap+xml">`) or link to one (`<link type="application/cap+xml">`, else the
first link); linked documents are fetched from the feed's own scheme and host only. An entry
is known by its `<id>` and `<updated>`: once taken in or refused it is never fetched again. A
refused entry is audited like a refused POST (the reason, the document's hash and size).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final
from urllib.parse import urljoin, urlsplit

import httpx
from lxml import etree
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from audio.errors import AudioError
from gateway.audit import service as audit
from gateway.cap import ingest, senders
from gateway.cap.mapping import MappingRule
from gateway.cap.models import CapFeedEntry, CapFeedState
from gateway.cap.reading import CapRefused, read_time
from gateway.cap.xsd import NAMESPACE
from gateway.deps import Runtime
from gateway.errors import MaeulError
from gateway.places import service as places
from gateway.settings import CapFeed

log = logging.getLogger(__name__)

ATOM: Final = "http://www.w3.org/2005/Atom"
_A: Final = {"a": ATOM}
MAX_FEED_BYTES: Final = 4 * 1024 * 1024
ACTOR: Final = "cap-poller"
_TIMEOUT: Final = httpx.Timeout(10.0)
_CAP_TYPES: Final = ("application/cap+xml", "application/xml", "text/xml")


@dataclass(frozen=True)
class Entry:
    key: str  # sha256 of the entry's id and updated
    document: bytes | None  # inline
    link: str | None  # to fetch


class FeedRefused(Exception):
    """The feed itself cannot be read (not XML, a DTD, too large, not Atom or CAP)."""


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def read_feed(body: bytes, url: str) -> list[Entry]:
    """The entries of an Atom feed, or the one CAP alert ``body`` is."""
    if len(body) > MAX_FEED_BYTES:
        raise FeedRefused(f"over {MAX_FEED_BYTES} bytes")
    try:
        tree = etree.ElementTree(etree.fromstring(body, _parser()))
    except etree.XMLSyntaxError as exc:
        raise FeedRefused(f"not XML: {exc.msg}") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise FeedRefused("a DOCTYPE is not allowed")
    root = tree.getroot()
    if etree.QName(root).namespace == NAMESPACE:
        return [Entry(hashlib.sha256(body).hexdigest(), body, None)]
    if etree.QName(root).text != f"{{{ATOM}}}feed":
        raise FeedRefused("neither an Atom feed nor a CAP alert")
    entries: list[Entry] = []
    for node in root.findall("a:entry", _A):
        key = "\n".join((node.findtext("a:id", "", _A), node.findtext("a:updated", "", _A)))
        digest = hashlib.sha256(key.encode()).hexdigest()
        inline = [
            e for e in node.iterfind("a:content/*", _A) if etree.QName(e).namespace == NAMESPACE
        ]
        if inline:
            entries.append(Entry(digest, etree.tostring(inline[0]), None))
            continue
        links = node.findall("a:link", _A)
        chosen = [k for k in links if k.get("type") in _CAP_TYPES] or links
        href = chosen[0].get("href") if chosen else None
        if href:
            entries.append(Entry(digest, None, urljoin(url, href)))
    return entries


def sent_order(document: bytes) -> float:
    """When a CAP document says it was sent (seconds since the epoch), to take a turn's
    documents in order; one that does not say (or is no CAP) goes last, to be refused there."""
    try:
        root = etree.fromstring(document, _parser())
        return read_time(root.findtext(f"{{{NAMESPACE}}}sent") or "").timestamp()
    except (etree.XMLSyntaxError, CapRefused):
        return math.inf


def _same_origin(url: str, feed: str) -> bool:
    one, two = urlsplit(url), urlsplit(feed)
    return (one.scheme, one.netloc) == (two.scheme, two.netloc)


class CapPoller:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        runtime: Runtime,
        *,
        city_code: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._sessions = sessions
        self._runtime = runtime
        self._city_code = city_code
        self._transport = transport

    async def run(self) -> None:
        while True:
            try:
                await self.poll_due()
            except Exception:
                log.exception("CAP feed pass failed; retrying")
            await asyncio.sleep(min(self._runtime.settings.cap_poll_s, 30.0))

    async def poll_due(self) -> dict[str, int]:
        """Poll every configured feed whose turn it is and this replica claims; the entries
        taken in (or refused) per feed URL."""
        done: dict[str, int] = {}
        feeds = self._runtime.settings.cap_feeds
        if not feeds:
            return done
        city_id = await self._feed_rows(feeds)
        for feed in feeds:
            feed_id = await self._claim(city_id, feed.url)
            if feed_id is None:
                continue
            done[feed.url] = await self._poll(city_id, feed_id, feed)
        return done

    async def _feed_rows(self, feeds: Sequence[CapFeed]) -> int:
        async with self._sessions() as session:
            city = await places.get_city(session, self._city_code)
            known = set(
                await session.scalars(
                    select(CapFeedState.url).where(CapFeedState.city_id == city.id)
                )
            )
            for feed in feeds:
                if feed.url in known:
                    continue
                try:
                    async with session.begin_nested():
                        await session.execute(
                            insert(CapFeedState).values(
                                city_id=city.id,
                                url=feed.url,
                                next_poll_at=self._runtime.clock.now(),
                                version=1,
                            )
                        )
                except IntegrityError:
                    pass  # another replica added it
            await session.commit()
            return city.id

    async def _claim(self, city_id: int, url: str) -> int | None:
        """Take this feed's turn (compare-and-set on its version), committed at once: another
        replica then finds it not due."""
        now = self._runtime.clock.now()
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(CapFeedState.id, CapFeedState.version).where(
                        CapFeedState.city_id == city_id,
                        CapFeedState.url == url,
                        CapFeedState.next_poll_at <= now,
                    )
                )
            ).first()
            if row is None:
                return None
            feed_id, version = row
            claimed = await session.execute(
                update(CapFeedState)
                .where(CapFeedState.id == feed_id, CapFeedState.version == version)
                .values(
                    version=version + 1,
                    next_poll_at=now + timedelta(seconds=self._runtime.settings.cap_poll_s),
                    last_polled_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if getattr(claimed, "rowcount", 0) != 1:
                await session.rollback()
                return None
            await session.commit()
            return int(feed_id)

    async def _poll(self, city_id: int, feed_id: int, feed: CapFeed) -> int:
        async with httpx.AsyncClient(
            transport=self._transport, timeout=_TIMEOUT, follow_redirects=False
        ) as client:
            try:
                entries = read_feed(await _fetch(client, feed.url), feed.url)
                error = None
            except (httpx.HTTPError, FeedRefused) as exc:
                entries, error = [], str(exc)[:300] or type(exc).__name__
            await self._note(feed_id, error)
            if error is not None:
                log.warning("CAP feed %s not read: %s", feed.url, error)
                return 0
            fetched: list[tuple[Entry, bytes]] = []
            for entry in entries:
                if await self._seen(feed_id, entry.key):
                    continue
                document = entry.document
                if document is None:
                    assert entry.link is not None
                    if not _same_origin(entry.link, feed.url):
                        await self._settle(city_id, feed_id, feed, entry, b"", "cap_link_elsewhere")
                        continue
                    try:
                        document = await _fetch(client, entry.link)
                    except httpx.HTTPError:
                        continue  # tried again next turn
                fetched.append((entry, document))
            # Oldest first, whatever the feed's order (Atom lists the newest first): an alert is
            # taken in before the Update or Cancel that references it in the same turn.
            for entry, document in sorted(fetched, key=lambda one: sent_order(one[1])):
                await self._take(city_id, feed_id, feed, entry, document)
            return len(fetched)

    async def _note(self, feed_id: int, error: str | None) -> None:
        async with self._sessions() as session:
            await session.execute(
                update(CapFeedState).where(CapFeedState.id == feed_id).values(last_error=error)
            )
            await session.commit()

    async def _seen(self, feed_id: int, key: str) -> bool:
        async with self._sessions() as session:
            found = await session.scalar(
                select(CapFeedEntry.id).where(
                    CapFeedEntry.feed_id == feed_id, CapFeedEntry.entry_key == key
                )
            )
            return found is not None

    async def _take(
        self, city_id: int, feed_id: int, feed: CapFeed, entry: Entry, document: bytes
    ) -> None:
        rules = [MappingRule.model_validate(r) for r in self._runtime.settings.cap_mapping]
        async with self._sessions() as session:
            city = await places.get_city(session, self._city_code)
            row = await senders.find_sender(session, city, feed.sender)
            principal = (
                await senders.principal_of_sender(session, self._runtime.settings, row)
                if row is not None and row.enabled
                else None
            )
            if principal is None:
                await session.rollback()
                await self._settle(
                    city_id, feed_id, feed, entry, document, "cap_sender_not_allowed"
                )
                return
            try:
                done = await ingest.ingest(
                    session,
                    self._runtime,
                    city,
                    principal,
                    document,
                    rules=rules,
                    sender=feed.sender,
                )
            except (MaeulError, AudioError) as exc:
                await session.rollback()
                path = getattr(exc, "path", None)
                reason = f"{exc.code} at {path}" if path else exc.code
                await self._settle(
                    city_id, feed_id, feed, entry, document, reason, actor=principal.actor
                )
                return
            outcome = "replayed" if done.replayed else "ok"
            if not await self._record(session, feed_id, entry, outcome):
                await session.rollback()
                return
            await self._audit(session, city_id, feed, document, outcome, None, principal.actor)
            await session.commit()

    async def _settle(
        self,
        city_id: int,
        feed_id: int,
        feed: CapFeed,
        entry: Entry,
        document: bytes,
        reason: str,
        *,
        actor: str = ACTOR,
    ) -> None:
        async with self._sessions() as session:
            if not await self._record(session, feed_id, entry, reason.split(" ")[0]):
                await session.rollback()
                return
            await self._audit(session, city_id, feed, document, "rejected", reason, actor)
            await session.commit()

    async def _record(
        self, session: AsyncSession, feed_id: int, entry: Entry, outcome: str
    ) -> bool:
        """Mark the entry done; False when another replica did it first."""
        try:
            async with session.begin_nested():
                await session.execute(
                    insert(CapFeedEntry).values(
                        feed_id=feed_id,
                        entry_key=entry.key,
                        outcome=outcome[:64],
                        created_at=self._runtime.clock.now(),
                    )
                )
        except IntegrityError:
            return False
        return True

    async def _audit(
        self,
        session: AsyncSession,
        city_id: int,
        feed: CapFeed,
        document: bytes,
        outcome: str,
        reason: str | None,
        actor: str,
    ) -> None:
        sha256, size = ingest.fingerprint(document)
        await audit.append(
            session,
            at=self._runtime.clock.now(),
            city_id=city_id,
            actor=actor,
            action="poll_cap_feed",
            target=f"cap_bytes={size},cap_sha256={sha256}",
            outcome=outcome,
            reason=reason,
            source=urlsplit(feed.url).netloc[:64],
            details={"feed": feed.url[:300], "sender": feed.sender},
        )


async def _fetch(client: httpx.AsyncClient, url: str) -> bytes:
    """The body at ``url``, read no further than a feed may be."""
    async with client.stream("GET", url) as response:
        response.raise_for_status()
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_FEED_BYTES:
                break
        return bytes(body)
