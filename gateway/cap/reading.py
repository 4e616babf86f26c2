"""A validated CAP 1.2 document read into what ingest needs: the alert, its `<info>` blocks and
their areas as Maeul areas. Pure: no database, no I/O.

Areas: `<polygon>` ("lat,lon lat,lon ..."; CAP requires the first point again at the end),
`<circle>` ("lat,lon radius", the radius in km) and `<geocode>` whose `valueName` is one of
``GEOCODE_NAMES`` (Korean administrative codes); other geocodes (SAME, FIPS, ...) are ignored,
and an area left with nothing Maeul can place is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from lxml import etree

from gateway.cap.xsd import NS
from gateway.errors import InvalidRequest
from gateway.places import areas
from gateway.places.areas import AreaRefused

# valueName -> how its values become 10-digit codes (zeros appended: a shorter code names the
# place that contains the villages). 법정동 codes are 10 digits (시도 2, 시군구 3, 읍면동 3,
# 리 2); LAWD_CD, as the national open-data APIs use it, is the 5-digit 시군구 part; ADM_CD is
# the 행정동 code, 10 digits (or the 8-digit form some data sets use).
GEOCODE_NAMES: Final[Mapping[str, tuple[int, ...]]] = {
    "KR-ADM": (10,),
    # The names Maeul's own CAP documents use (gateway/cap/publish.py), so they read back.
    "ADMIN_DONG_CODE": (10,),
    "LEGAL_DONG_CODE": (10,),
    "ADM_CD": (8, 10),
    "행정동코드": (8, 10),
    "KR-LAWD": (10,),
    "법정동코드": (10,),
    "LAWD_CD": (5, 10),
}
_DIGITS = re.compile(r"\d+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
# What Maeul keeps of an alert's identifier and sender (they are the alert's key).
MAX_ID_CHARS: Final = 200


class CapRefused(InvalidRequest):
    """A CAP document Maeul will not act on (422), with the schema path where one applies."""

    def __init__(self, code: str, *, ko: str, en: str, path: str | None = None) -> None:
        super().__init__(code, ko=ko, en=en)
        self.path = path

    def extra(self) -> dict[str, object]:
        return {} if self.path is None else {"path": self.path}


@dataclass(frozen=True)
class Reference:
    sender: str
    identifier: str
    sent: str  # normalised, as ``sent_key`` writes it


@dataclass(frozen=True)
class Info:
    language: str
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    headline: str | None
    description: str | None
    instruction: str | None
    expires: datetime | None
    areas: tuple[areas.Area, ...]
    response_types: tuple[str, ...] = ()
    effective: datetime | None = None
    onset: datetime | None = None

    @property
    def text(self) -> str:
        """What is spoken: the headline, the description and the instruction, in that order."""
        return self.said or self.event

    @property
    def said(self) -> str:
        parts = [p.strip() for p in (self.headline, self.description, self.instruction) if p]
        return "\n".join(p for p in parts if p)


@dataclass(frozen=True)
class Alert:
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: str
    references: tuple[Reference, ...]
    infos: tuple[Info, ...]
    scope: str = "Public"

    @property
    def sent_key(self) -> str:
        return sent_key(self.sent)

    def texts(self) -> dict[str, str]:
        """Each `<info>`'s text by language; one with no headline, description or instruction
        has none (its event name would be another language's word)."""
        spoken = self.spoken_info()
        return {i.language: i.text for i in self.infos if i.said or i is spoken}

    def spoken_info(self) -> Info | None:
        """The Korean `<info>` if there is one, else the first (which ingest refuses)."""
        for info in self.infos:
            if info.language.lower().split("-")[0] == "ko":
                return info
        return self.infos[0] if self.infos else None


def sent_key(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(node: etree._Element, name: str) -> str | None:
    found = node.find(f"cap:{name}", NS)
    return found.text.strip() if found is not None and found.text else None


def _texts(node: etree._Element, name: str) -> list[str]:
    return [f.text.strip() for f in node.findall(f"cap:{name}", NS) if f.text]


def read_time(value: str, path: str = "/cap:alert") -> datetime:
    """A CAP dateTime (the schema holds the form: an offset, never "Z"). XML Schema allows
    24:00:00, the end of a day: the next day's 00:00:00 here. A time Python cannot place in UTC
    (year 1 east of Greenwich, year 9999 west of it) is refused, not a crash."""
    try:
        if "T24:00:00" in value:
            at = datetime.fromisoformat(value.replace("T24:00:00", "T00:00:00")) + timedelta(days=1)
        else:
            at = datetime.fromisoformat(value)
        at.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CapRefused(
            "cap_time_invalid",
            ko=f"시각을 읽을 수 없습니다: {value[:40]}",
            en=f"The time cannot be placed: {value[:40]}",
            path=path,
        ) from None
    return at


def read_alert(root: etree._Element) -> Alert:
    """The alert of a document that passed `gateway.cap.xsd.parse`."""
    references = tuple(
        _reference(triple) for value in _texts(root, "references") for triple in value.split()
    )
    for name in ("identifier", "sender"):
        if len(_text(root, name) or "") > MAX_ID_CHARS:
            raise CapRefused(
                "cap_field_too_long",
                ko=f"<{name}>는 {MAX_ID_CHARS}자를 넘을 수 없습니다.",
                en=f"The <{name}> is longer than {MAX_ID_CHARS} characters.",
                path=f"/cap:alert/cap:{name}",
            )
    return Alert(
        identifier=_text(root, "identifier") or "",
        sender=_text(root, "sender") or "",
        sent=read_time(_text(root, "sent") or "", "/cap:alert/cap:sent"),
        status=_text(root, "status") or "",
        msg_type=_text(root, "msgType") or "",
        references=references,
        infos=tuple(_info(i) for i in root.findall("cap:info", NS)),
        scope=_text(root, "scope") or "",
    )


def _reference(triple: str) -> Reference:
    parts = triple.split(",")
    try:
        if len(parts) != 3:
            raise ValueError(triple)
        return Reference(parts[0], parts[1], sent_key(read_time(parts[2])))
    except ValueError:
        raise CapRefused(
            "cap_reference_invalid",
            ko=f"references 값은 '보낸곳,식별자,보낸시각' 형식이어야 합니다: {triple[:200]}",
            en=f"A reference is 'sender,identifier,sent': {triple[:200]}",
            path="/cap:alert/cap:references",
        ) from None


def _language(node: etree._Element) -> str:
    """The `<language>`; left out, CAP's default en-US, unless the text is plainly Korean (a
    Korean sender who left it out)."""
    given = _text(node, "language")
    if given:
        return given[:35]
    said = " ".join(_text(node, n) or "" for n in ("headline", "description", "instruction"))
    return "ko-KR" if _HANGUL.search(said) else "en-US"


def _info(node: etree._Element) -> Info:
    expires, effective, onset = (_text(node, n) for n in ("expires", "effective", "onset"))
    return Info(
        language=_language(node),
        categories=tuple(_texts(node, "category")),
        event=_text(node, "event") or "",
        urgency=_text(node, "urgency") or "",
        severity=_text(node, "severity") or "",
        certainty=_text(node, "certainty") or "",
        headline=_text(node, "headline"),
        description=_text(node, "description"),
        instruction=_text(node, "instruction"),
        expires=read_time(expires, "/cap:alert/cap:info/cap:expires") if expires else None,
        areas=tuple(shape for area in node.findall("cap:area", NS) for shape in _area_shapes(area)),
        response_types=tuple(_texts(node, "responseType")),
        effective=read_time(effective, "/cap:alert/cap:info/cap:effective") if effective else None,
        onset=read_time(onset, "/cap:alert/cap:info/cap:onset") if onset else None,
    )


def _area_shapes(node: etree._Element) -> list[areas.Area]:
    shapes: list[areas.Area] = [_polygon(text) for text in _texts(node, "polygon")]
    shapes += [_circle(text) for text in _texts(node, "circle")]
    codes: list[str] = []
    for geocode in node.findall("cap:geocode", NS):
        name, value = _text(geocode, "valueName") or "", _text(geocode, "value") or ""
        if name in GEOCODE_NAMES:
            codes.append(_code(name, value))
    if codes:
        shapes.append(areas.codes(codes))
    if not shapes:
        desc = (_text(node, "areaDesc") or "")[:100]
        known = ", ".join(GEOCODE_NAMES)
        raise CapRefused(
            "cap_area_unplaceable",
            ko=f"지역 '{desc}'에 다각형, 원, 또는 행정 코드({known})가 없습니다.",
            en=f"The area {desc!r} has no polygon, circle or Korean geocode ({known}).",
            path="/cap:alert/cap:info/cap:area",
        )
    return shapes


def _code(name: str, value: str) -> str:
    lengths = GEOCODE_NAMES[name]
    if not _DIGITS.fullmatch(value) or len(value) not in lengths:
        wanted = " or ".join(str(n) for n in lengths)
        raise AreaRefused(
            "invalid_area_code",
            ko=f"{name} 코드는 숫자 {wanted}자리여야 합니다: {value[:40]}",
            en=f"A {name} code is {wanted} digits: {value[:40]}",
        )
    return value.ljust(10, "0")


def _numbers(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise AreaRefused(
            "invalid_coordinates",
            ko=f"좌표는 '위도,경도' 숫자여야 합니다: {text[:60]}",
            en=f"A point is 'lat,lon' in numbers: {text[:60]}",
        ) from None


def _polygon(text: str) -> areas.Polygon:
    points = [_numbers(pair) for pair in text.split()]
    if len(points) < 4 or points[0] != points[-1]:
        raise AreaRefused(
            "invalid_polygon",
            ko="CAP 다각형은 점이 4개 이상이고 마지막 점이 첫 점과 같아야(닫혀야) 합니다.",
            en="A CAP polygon has at least 4 points and ends on its first (it is closed).",
        )
    return areas.polygon(points)


def _circle(text: str) -> areas.Circle:
    parts = text.split()
    centre = _numbers(parts[0]) if parts else []
    if len(parts) != 2 or len(centre) != 2:
        raise AreaRefused(
            "invalid_area",
            ko=f"CAP 원은 '위도,경도 반경km' 형식이어야 합니다: {text[:60]}",
            en=f"A CAP circle is 'lat,lon radius_km': {text[:60]}",
        )
    try:
        radius_km = float(parts[1])
    except ValueError:
        radius_km = float("nan")
    return areas.circle(centre[0], centre[1], radius_km * 1000)
