"""Every broadcast as a CAP 1.2 alert (OASIS Common Alerting Protocol), built with lxml and
valid against the shipped schema.

- `identifier` is stable: ``urn:maeul:{city}:{broadcast id}``; `sender` is the city's
  (``GATEWAY_CAP_SENDER``); `sent` is the broadcast's creation in the city's time zone.
- `status` follows the mode: live -> Actual, exercise -> Exercise, test -> Test.
- `msgType`: Alert; an all clear is an Update whose `references` name the alert it ends, with
  `responseType` AllClear; a resend is an Update of the broadcast it repeats; a broadcast made
  from a CAP Update is an Update of the broadcasts of the alerts that Update referenced. A cancelled
  broadcast also has a Cancel message (``…:cancel``) referencing it.
- `info` (ko-KR, then one per other language the broadcast has a text in): category, event,
  urgency, severity and certainty from Maeul's category (``CATEGORY_TABLE``), urgency raised to
  Immediate for anything sent at the disaster priority; headline = title, description = text
  (or "(음성 방송)" for a recording with no text; another language's: its text), web = the
  residents' page of the first village it reached (in that language).
- Areas: a broadcast targeted by an area has one `<area>` with the circle (radius in km) or the
  polygon ("lat,lon" pairs, closed) as given (one made from a CAP alert: the alert's shapes);
  any other has one `<area>` per village with its boundary's polygons (or its point, a circle
  of radius 0). Each carries the villages'
  national codes as `<geocode>`: valueName ``LEGAL_DONG_CODE`` (10-digit 법정동코드) and
  ``ADMIN_DONG_CODE`` (10-digit 행정동코드); `areaDesc` names the villages.

No person appears in a document: no account, no user name, no speaker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from lxml import etree
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.broadcasts.models import Broadcast
from gateway.broadcasts.reading import reached_villages
from gateway.cap.models import CapAlert
from gateway.cap.xsd import NAMESPACE, validate
from gateway.places.models import City, District, Village
from gateway.settings import Settings
from wire.contract import Category

LEGAL_CODE: Final = "LEGAL_DONG_CODE"
ADMIN_CODE: Final = "ADMIN_DONG_CODE"
NO_TEXT: Final = "(음성 방송)"
STATUS_OF_MODE: Final[Mapping[str, str]] = {
    "live": "Actual",
    "exercise": "Exercise",
    "test": "Test",
}


@dataclass(frozen=True)
class CategoryMapping:
    cap_category: str
    event: str
    urgency: str
    severity: str
    certainty: str


# Maeul category -> CAP info (README, "CAP 1.2 out").
CATEGORY_TABLE: Final[Mapping[Category, CategoryMapping]] = {
    Category.DISASTER: CategoryMapping("Safety", "재난 경보", "Immediate", "Severe", "Observed"),
    Category.CRIME_PREVENTION: CategoryMapping(
        "Security", "방범 안내", "Expected", "Moderate", "Likely"
    ),
    Category.ADMINISTRATIVE: CategoryMapping("Other", "행정 안내", "Future", "Minor", "Observed"),
    Category.VILLAGE_NOTICE: CategoryMapping("Other", "마을 소식", "Future", "Minor", "Observed"),
}
ALL_CLEAR_EVENT_SUFFIX: Final = " 해제"


@dataclass(frozen=True)
class PlaceFacts:
    """What a document says of one village: names, point, codes and boundary."""

    id: int
    name: str
    district_name: str
    lat: float | None
    lon: float | None
    codes: tuple[tuple[str, str], ...]  # (valueName, value)
    boundary: Mapping[str, Any] | None


@dataclass(frozen=True)
class Reference:
    """Another message this one refers to (CAP `references`: sender,identifier,sent); the
    sender is the city's own unless another's (an alert Maeul took in) is named."""

    identifier: str
    sent: datetime
    sender: str | None = None


def identifier_of(city: City, broadcast_id: str) -> str:
    return f"urn:maeul:{city.code}:{broadcast_id}"


def cancel_identifier_of(city: City, broadcast_id: str) -> str:
    return f"{identifier_of(city, broadcast_id)}:cancel"


def cap_time(when: datetime, zone: str) -> str:
    """A CAP dateTime: seconds, a numeric offset, UTC as -00:00 (never "Z")."""
    local = when.astimezone(ZoneInfo(zone)).replace(microsecond=0).isoformat()
    return local[:-6] + "-00:00" if local.endswith("+00:00") else local


def _number(value: float) -> str:
    return format(value, ".6f").rstrip("0").rstrip(".")


def _pair(lat: float, lon: float) -> str:
    return f"{_number(lat)},{_number(lon)}"


def sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NAMESPACE}}}{name}")
    if text is not None:
        element.text = text
    return element


def header(
    settings: Settings,
    city: City,
    *,
    identifier: str,
    sent: datetime,
    mode: str,
    msg_type: str,
    scope: str = "Public",
) -> etree._Element:
    root = etree.Element(f"{{{NAMESPACE}}}alert", nsmap={None: NAMESPACE})
    sub(root, "identifier", identifier)
    sub(root, "sender", settings.cap_sender_id)
    sub(root, "sent", cap_time(sent, city.timezone))
    sub(root, "status", STATUS_OF_MODE.get(mode, "Test"))
    sub(root, "msgType", msg_type)
    sub(root, "scope", scope)
    return root


def references_text(settings: Settings, city: City, references: Iterable[Reference]) -> str:
    return " ".join(
        f"{r.sender or settings.cap_sender_id},{r.identifier},{cap_time(r.sent, city.timezone)}"
        for r in references
    )


def taken_in(broadcast: Broadcast) -> Reference | None:
    """The CAP alert a broadcast was made from (another sender's), as that sender named it."""
    cap = broadcast.target.get("cap")
    if not isinstance(cap, Mapping):
        return None
    try:
        sent = datetime.fromisoformat(str(cap["sent"]))
        return Reference(str(cap["identifier"]), sent, sender=str(cap["sender"]))
    except (KeyError, ValueError):
        return None


def _rings(boundary: Mapping[str, Any] | None) -> list[list[list[float]]]:
    """The outer rings of a GeoJSON Polygon or MultiPolygon ([lon, lat] points)."""
    if not boundary:
        return []
    coordinates = boundary.get("coordinates") or []
    if boundary.get("type") == "Polygon":
        return [coordinates[0]] if coordinates else []
    if boundary.get("type") == "MultiPolygon":
        return [polygon[0] for polygon in coordinates if polygon]
    return []


def _ring_text(ring: Sequence[Sequence[float]]) -> str | None:
    points = [(float(p[1]), float(p[0])) for p in ring]
    if points and points[0] != points[-1]:
        points.append(points[0])
    if len(points) < 4:
        return None
    return " ".join(_pair(lat, lon) for lat, lon in points)


def _geocodes(area: etree._Element, codes: Iterable[tuple[str, str]]) -> None:
    for name, value in dict.fromkeys(codes):
        geocode = sub(area, "geocode")
        sub(geocode, "valueName", name)
        sub(geocode, "value", value)


def _place_desc(place: PlaceFacts) -> str:
    return f"{place.district_name} {place.name}".strip()


def _areas(
    info: etree._Element, shapes: Sequence[Mapping[str, Any]], places: Sequence[PlaceFacts]
) -> None:
    """``shapes``: the area the broadcast was sent to (or the CAP alert's areas as its sender
    drew them); none: one <area> per village."""
    if not shapes:
        # One <area> per village: its boundary's polygons, else its point.
        for place in places:
            area = sub(info, "area")
            sub(area, "areaDesc", _place_desc(place))
            rings = [t for t in (_ring_text(r) for r in _rings(place.boundary)) if t]
            for outline in rings:
                sub(area, "polygon", outline)
            if not rings and place.lat is not None and place.lon is not None:
                sub(area, "circle", f"{_pair(place.lat, place.lon)} 0")
            _geocodes(area, place.codes)
        return
    area = sub(info, "area")
    sub(area, "areaDesc", ", ".join(_place_desc(p) for p in places) or "-")
    given: list[str] = []
    for shape in shapes:
        if "polygon" in shape:
            closed = _ring_text([(lon, lat) for lat, lon in shape["polygon"]])
            if closed:
                sub(area, "polygon", closed)
        elif "circle" in shape:
            circle = shape["circle"]
            radius_km = float(circle["radius_m"]) / 1000
            sub(area, "circle", f"{_pair(circle['lat'], circle['lon'])} {_number(radius_km)}")
        given += [str(c) for c in shape.get("codes", [])]
    if all("codes" in shape for shape in shapes):
        # Codes as given: their villages' boundaries where known.
        for place in places:
            for text in (_ring_text(r) for r in _rings(place.boundary)):
                if text:
                    sub(area, "polygon", text)
    legal = {v for p in places for name, v in p.codes if name == LEGAL_CODE}
    admin = {v for p in places for name, v in p.codes if name == ADMIN_CODE}
    named = [(ADMIN_CODE if c in admin and c not in legal else LEGAL_CODE, c) for c in given]
    _geocodes(area, [*named, *(c for p in places for c in p.codes)])


def _shapes(broadcast: Broadcast) -> list[Mapping[str, Any]]:
    recorded = broadcast.target.get("area")
    if isinstance(recorded, Mapping):
        return [recorded]
    cap = broadcast.target.get("cap")
    taken = cap.get("areas") if isinstance(cap, Mapping) else None
    return [s for s in taken if isinstance(s, Mapping)] if isinstance(taken, list) else []


def _urgency(settings: Settings, broadcast: Broadcast, mapping: CategoryMapping) -> str:
    category = Category(broadcast.category)
    priority = settings.priority_of(category)  # a test's own priority says nothing of this
    if priority >= settings.priority_of(Category.DISASTER):
        return "Immediate"
    return mapping.urgency


def build_alert(
    settings: Settings,
    city: City,
    broadcast: Broadcast,
    places: Sequence[PlaceFacts],
    *,
    references: Sequence[Reference] = (),
    all_clear: bool = False,
) -> etree._Element:
    """The broadcast's CAP alert (validated: a document that fails the schema is a bug)."""
    msg_type = "Update" if references else "Alert"
    root = header(
        settings,
        city,
        identifier=identifier_of(city, broadcast.id),
        sent=broadcast.created_at,
        mode=broadcast.mode,
        msg_type=msg_type,
    )
    if references:
        sub(root, "references", references_text(settings, city, references))
    # Korean first, then one <info> per other language the broadcast has a text in.
    said = [("ko-KR", broadcast.text or NO_TEXT)]
    said += [(tag, text) for tag, text in sorted((broadcast.texts or {}).items()) if text]
    for language, description in said:
        _info(root, settings, city, broadcast, places, language, description, all_clear)
    validate(root)
    return root


def _info(
    root: etree._Element,
    settings: Settings,
    city: City,
    broadcast: Broadcast,
    places: Sequence[PlaceFacts],
    language: str,
    description: str,
    all_clear: bool,
) -> None:
    mapping = CATEGORY_TABLE[Category(broadcast.category)]
    info = sub(root, "info")
    sub(info, "language", language)
    sub(info, "category", mapping.cap_category)
    sub(info, "event", mapping.event + (ALL_CLEAR_EVENT_SUFFIX if all_clear else ""))
    if all_clear:
        sub(info, "responseType", "AllClear")
    sub(info, "urgency", "Past" if all_clear else _urgency(settings, broadcast, mapping))
    sub(info, "severity", "Minor" if all_clear else mapping.severity)
    sub(info, "certainty", "Observed" if all_clear else mapping.certainty)
    sub(info, "expires", cap_time(broadcast.expires_at, city.timezone))
    sub(info, "senderName", city.name)
    sub(info, "headline", broadcast.title or mapping.event)
    sub(info, "description", description)
    if places:
        base = settings.public_url.rstrip("/")
        lang = "" if language == "ko-KR" else f"?lang={language}"
        sub(info, "web", f"{base}/notices/{places[0].id}{lang}#notice-{broadcast.id}")
    _areas(info, _shapes(broadcast), places)


def build_cancel(
    settings: Settings, city: City, broadcast: Broadcast, cancelled_at: datetime
) -> etree._Element:
    """The Cancel message of a cancelled broadcast: it references the alert, nothing more."""
    root = header(
        settings,
        city,
        identifier=cancel_identifier_of(city, broadcast.id),
        sent=cancelled_at,
        mode=broadcast.mode,
        msg_type="Cancel",
    )
    sub(root, "note", "방송이 취소되었습니다. / The broadcast was cancelled.")
    reference = Reference(identifier_of(city, broadcast.id), broadcast.created_at)
    sub(root, "references", references_text(settings, city, [reference]))
    validate(root)
    return root


def serialize(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True))


# --------------------------------------------------------------------------------------------
# Reading what a document needs


async def places_of(session: AsyncSession, village_ids: Sequence[int]) -> list[PlaceFacts]:
    """The villages, in the order given, with their district's name."""
    wanted = list(dict.fromkeys(village_ids))
    found: dict[int, PlaceFacts] = {}
    for start in range(0, len(wanted), 500):
        rows = await session.execute(
            select(Village, District.name)
            .join(District, District.id == Village.district_id)
            .where(Village.id.in_(wanted[start : start + 500]))
        )
        for village, district_name in rows.tuples():
            codes = [(LEGAL_CODE, village.legal_code), (ADMIN_CODE, village.admin_code)]
            found[village.id] = PlaceFacts(
                id=village.id,
                name=village.name,
                district_name=district_name,
                lat=village.lat,
                lon=village.lon,
                codes=tuple((n, v) for n, v in codes if v),
                boundary=village.boundary,
            )
    return [found[v] for v in wanted if v in found]


async def references_of(session: AsyncSession, city: City, broadcast: Broadcast) -> list[Reference]:
    """The messages this broadcast updates: the alert it clears, the broadcast it resends, or
    the broadcasts of the alerts a CAP Update it was made from referenced."""
    earlier_id = broadcast.all_clear_of or broadcast.target.get("resend_of")
    earlier_ids = [earlier_id] if isinstance(earlier_id, str) else []
    if not earlier_ids:
        earlier_ids = await _updated_by_cap(session, city, broadcast)
    found = []
    for one in earlier_ids:
        earlier = await session.get(Broadcast, one)
        if earlier is not None and earlier.city_id == city.id:
            found.append(Reference(identifier_of(city, earlier.id), earlier.created_at))
    return found


async def _updated_by_cap(session: AsyncSession, city: City, broadcast: Broadcast) -> list[str]:
    cap = broadcast.target.get("cap")
    if not isinstance(cap, Mapping) or cap.get("msg_type") != "Update":
        return []
    replaces = cap.get("replaces")
    if isinstance(replaces, list) and replaces:
        # Named when the Update came in, whenever it went out (at once, approved, or held).
        return [str(b) for b in replaces if b != broadcast.id]
    row = await session.scalar(
        select(CapAlert).where(CapAlert.city_id == city.id, CapAlert.broadcast_id == broadcast.id)
    )
    if row is None:
        return []
    named = {tuple(r.split(",", 2)[:2]) for r in row.references if r.count(",") >= 2}
    if not named:
        return []
    earlier = await session.scalars(
        select(CapAlert.broadcast_id).where(
            CapAlert.city_id == city.id,
            CapAlert.sender.in_({sender for sender, _ in named}),
            CapAlert.identifier.in_({identifier for _, identifier in named}),
            CapAlert.broadcast_id.is_not(None),
        )
    )
    return [b for b in dict.fromkeys(earlier) if b is not None and b != broadcast.id]


async def alert_document(
    session: AsyncSession, settings: Settings, city: City, broadcast: Broadcast
) -> etree._Element:
    places = await places_of(session, reached_villages(broadcast))
    return build_alert(
        settings,
        city,
        broadcast,
        places,
        references=await references_of(session, city, broadcast),
        all_clear=broadcast.all_clear_of is not None,
    )
