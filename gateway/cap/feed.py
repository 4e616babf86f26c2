"""The public Atom feed (RFC 4287) of the city's real alerts, for other alerting systems.

Only live broadcasts (never test or exercise ones) of the last ``WINDOW``, newest first, at
most ``limit`` of them; a cancelled one adds the entry of its Cancel message. Each entry links
to its CAP document on the public route (``/api/v1/cap/alerts/{identifier}.xml``), which serves
live broadcasts only. Nothing in the feed or those documents names a person: no sender account,
no user, no speaker; the author is the city.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from lxml import etree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import Broadcast
from gateway.cap import publish
from gateway.errors import NotFound
from gateway.places.models import City
from gateway.settings import Settings
from wire.contract import Category

ATOM: Final = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE: Final = "application/cap+xml"
ATOM_MEDIA_TYPE: Final = "application/atom+xml"
WINDOW: Final = timedelta(days=30)
ALERTS_PATH: Final = "/api/v1/cap/alerts"


@dataclass(frozen=True)
class Feed:
    body: bytes
    etag: str
    updated: datetime


def alert_url(settings: Settings, identifier: str) -> str:
    return f"{settings.public_url.rstrip('/')}{ALERTS_PATH}/{identifier}.xml"


def _atom(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ATOM}}}{name}")
    if text is not None:
        element.text = text
    return element


def _stamp(when: datetime) -> str:
    return publish.cap_time(when, "UTC").replace("-00:00", "Z")


def _entry(
    feed: etree._Element,
    settings: Settings,
    *,
    identifier: str,
    title: str,
    updated: datetime,
    summary: str,
    category: str,
) -> None:
    entry = _atom(feed, "entry")
    _atom(entry, "id", identifier)
    _atom(entry, "title", title)
    _atom(entry, "updated", _stamp(updated))
    link = _atom(entry, "link")
    link.set("rel", "alternate")
    link.set("type", CAP_MEDIA_TYPE)
    link.set("href", alert_url(settings, identifier))
    _atom(entry, "category").set("term", category)
    _atom(entry, "summary", summary)


async def live_broadcasts(
    session: AsyncSession, city: City, now: datetime, limit: int
) -> list[Broadcast]:
    rows = await session.scalars(
        select(Broadcast)
        .where(
            Broadcast.city_id == city.id,
            Broadcast.mode == "live",
            Broadcast.created_at >= now - WINDOW,
        )
        .order_by(Broadcast.created_at.desc(), Broadcast.id)
        .limit(limit)
    )
    return list(rows)


def _all_clear_title(headline: str) -> str:
    """An all clear's own title says "[해제]" already (``all_clear.title_of``); said once."""
    return headline if headline.startswith("[해제]") else f"[해제] {headline}"


async def build_feed(
    session: AsyncSession, settings: Settings, city: City, now: datetime, limit: int
) -> Feed:
    broadcasts = await live_broadcasts(session, city, now, limit)
    items: list[tuple[datetime, dict[str, str], datetime]] = []
    for b in broadcasts:
        mapping = publish.CATEGORY_TABLE[Category(b.category)]
        headline = b.title or mapping.event
        items.append(
            (
                b.created_at,
                {
                    "identifier": publish.identifier_of(city, b.id),
                    "title": _all_clear_title(headline) if b.all_clear_of else headline,
                    "summary": b.text or publish.NO_TEXT,
                    "category": mapping.cap_category,
                },
                b.created_at,
            )
        )
        if b.cancelled_at is not None:
            items.append(
                (
                    b.cancelled_at,
                    {
                        "identifier": publish.cancel_identifier_of(city, b.id),
                        "title": f"[취소] {headline}",
                        "summary": "방송이 취소되었습니다.",
                        "category": mapping.cap_category,
                    },
                    b.cancelled_at,
                )
            )
    items.sort(key=lambda item: item[0], reverse=True)
    updated = items[0][2] if items else city.created_at
    root = etree.Element(f"{{{ATOM}}}feed", nsmap={None: ATOM})
    _atom(root, "id", f"urn:maeul:{city.code}:cap-feed")
    _atom(root, "title", f"{city.name} 마을 방송 경보 (CAP 1.2)")
    _atom(root, "updated", _stamp(updated))
    _atom(_atom(root, "author"), "name", city.name)
    self_link = _atom(root, "link")
    self_link.set("rel", "self")
    self_link.set("type", ATOM_MEDIA_TYPE)
    self_link.set("href", f"{settings.public_url.rstrip('/')}/api/v1/cap/feed")
    for _, fields, when in items:
        _entry(root, settings, updated=when, **fields)
    body = bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Feed(body, etag, updated)


def _not_public(identifier: str) -> NotFound:
    return NotFound(
        "cap_alert_not_found",
        ko="공개된 CAP 경보가 없습니다.",
        en=f"No public CAP alert has the identifier {identifier!r}.",
    )


async def public_document(
    session: AsyncSession, settings: Settings, city: City, identifier: str
) -> etree._Element:
    """The CAP document of a live broadcast (or its Cancel message) by identifier."""
    prefix = publish.identifier_of(city, "")
    rest = identifier.removeprefix(prefix) if identifier.startswith(prefix) else ""
    broadcast_id, _, suffix = rest.partition(":")
    if suffix not in ("", "cancel") or len(broadcast_id) != 32:
        raise _not_public(identifier)
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.city_id != city.id or broadcast.mode != "live":
        raise _not_public(identifier)
    if suffix == "cancel":
        if broadcast.cancelled_at is None:
            raise _not_public(identifier)
        return publish.build_cancel(settings, city, broadcast, broadcast.cancelled_at)
    return await publish.alert_document(session, settings, city, broadcast)
