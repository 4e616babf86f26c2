"""CAP 1.2 documents for tests: the OASIS specification's appendix examples (homeland security
advisory, severe thunderstorm, earthquake, AMBER alert), moved to the tiny preset's Korean
places, and the pieces to write others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape

# The tests' clock starts at 2026-01-01T00:00Z, 09:00 in Korea.
SENT = "2026-01-01T08:58:00+09:00"
EXPIRES = "2026-01-01T12:00:00+09:00"


def area(
    desc: str,
    *,
    polygons: Sequence[str] = (),
    circles: Sequence[str] = (),
    geocodes: Sequence[tuple[str, str]] = (),
) -> str:
    parts = [f"<areaDesc>{escape(desc)}</areaDesc>"]
    parts += [f"<polygon>{p}</polygon>" for p in polygons]
    parts += [f"<circle>{c}</circle>" for c in circles]
    parts += [
        f"<geocode><valueName>{escape(n)}</valueName><value>{escape(v)}</value></geocode>"
        for n, v in geocodes
    ]
    return f"<area>{''.join(parts)}</area>"


def info(
    *,
    category: str,
    event: str,
    urgency: str,
    severity: str,
    certainty: str,
    headline: str,
    description: str,
    areas: Sequence[str],
    language: str = "ko-KR",
    instruction: str | None = None,
    expires: str | None = EXPIRES,
    response_type: str | None = None,
    effective: str | None = None,
    onset: str | None = None,
) -> str:
    parts = [
        f"<language>{language}</language>",
        f"<category>{category}</category>",
        f"<event>{escape(event)}</event>",
    ]
    if response_type is not None:
        parts.append(f"<responseType>{response_type}</responseType>")
    parts += [
        f"<urgency>{urgency}</urgency>",
        f"<severity>{severity}</severity>",
        f"<certainty>{certainty}</certainty>",
    ]
    if effective is not None:
        parts.append(f"<effective>{effective}</effective>")
    if onset is not None:
        parts.append(f"<onset>{onset}</onset>")
    if expires is not None:
        parts.append(f"<expires>{expires}</expires>")
    parts += [
        f"<headline>{escape(headline)}</headline>",
        f"<description>{escape(description)}</description>",
    ]
    if instruction is not None:
        parts.append(f"<instruction>{escape(instruction)}</instruction>")
    parts += list(areas)
    return f"<info>{''.join(parts)}</info>"


def alert(
    identifier: str,
    *,
    sender: str,
    infos: Sequence[str] = (),
    msg_type: str = "Alert",
    status: str = "Actual",
    sent: str = SENT,
    references: Sequence[str] = (),
    namespace: str = "urn:oasis:names:tc:emergency:cap:1.2",
    scope: str = "<scope>Public</scope>",
) -> bytes:
    """``scope``: the `<scope>` element and what follows it (`<restriction>`, `<addresses>`)."""
    refs = f"<references>{' '.join(references)}</references>" if references else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<alert xmlns="{namespace}">'
        f"<identifier>{escape(identifier)}</identifier><sender>{escape(sender)}</sender>"
        f"<sent>{sent}</sent><status>{status}</status><msgType>{msg_type}</msgType>"
        f"{scope}{refs}{''.join(infos)}</alert>"
    ).encode()


def rain(language: str, headline: str, description: str, where: str) -> str:
    """A moderate heavy-rain <info> in ``language``."""
    return info(
        category="Met",
        event="호우",
        urgency="Expected",
        severity="Moderate",
        certainty="Likely",
        headline=headline,
        description=description,
        areas=[where],
        language=language,
    )


def polygon(points: Sequence[tuple[float, float]]) -> str:
    """CAP's form, closed: "lat,lon lat,lon ... (the first again)"."""
    ring = [*points, points[0]]
    return " ".join(f"{lat:.6f},{lon:.6f}" for lat, lon in ring)


def box(villages: Sequence[dict[str, Any]], margin: float = 0.002) -> str:
    lats = [v["lat"] for v in villages]
    lons = [v["lon"] for v in villages]
    south, north = min(lats) - margin, max(lats) + margin
    west, east = min(lons) - margin, max(lons) + margin
    return polygon([(south, west), (south, east), (north, east), (north, west)])


# --------------------------------------------------------------------------------------------
# The specification's examples (CAP 1.2, Appendix A), in Korea

KMA = "kma-alerts@weather.go.kr"
POLICE = "amber@gnpolice.go.kr"
MOIS = "crisis@mois.go.kr"


def thunderstorm(polygon_text: str, identifier: str = "KMA-TS-20260101-0001") -> bytes:
    """A.2, the severe thunderstorm warning: a polygon, and an English <info> beside the
    Korean one (the Korean is spoken, the English kept)."""
    where = area("가람면 일대", polygons=[polygon_text])
    return alert(
        identifier,
        sender=KMA,
        infos=[
            info(
                language="en-US",
                category="Met",
                event="SEVERE THUNDERSTORM",
                urgency="Immediate",
                severity="Severe",
                certainty="Observed",
                headline="SEVERE THUNDERSTORM WARNING",
                description="Hail, moving east.",
                instruction="Take shelter.",
                areas=[where],
            ),
            info(
                category="Met",
                event="뇌우",
                urgency="Immediate",
                severity="Severe",
                certainty="Observed",
                headline="가람면 뇌우 경보",
                description="우박을 동반한 뇌우입니다.",
                instruction="건물 안으로 대피하십시오.",
                areas=[where],
            ),
        ],
    )


def earthquake(
    where: str,
    identifier: str,
    *,
    msg_type: str = "Alert",
    references: Sequence[str] = (),
    status: str = "Actual",
    sent: str = SENT,
) -> bytes:
    """A.3, the earthquake report (the specification's is an Update of an earlier one), where
    the ``area`` says (the specification's: a circle)."""
    return alert(
        identifier,
        sender=KMA,
        msg_type=msg_type,
        status=status,
        sent=sent,
        references=references,
        infos=[
            info(
                category="Geo",
                event="지진",
                urgency="Immediate",
                severity="Severe",
                certainty="Observed",
                headline="규모 4.8 지진 발생",
                description="가람면 북쪽입니다.",
                instruction="넓은 곳으로 피하십시오.",
                areas=[where],
            )
        ],
    )


def amber(legal_code: str) -> bytes:
    """A.4, the AMBER alert: a missing child, placed by a 법정동 code (the example's SAME code,
    in Korea)."""
    return alert(
        "GNPOL-AMBER-20260101-07",
        sender=POLICE,
        infos=[
            info(
                category="Rescue",
                event="실종 아동",
                urgency="Immediate",
                severity="Severe",
                certainty="Likely",
                headline="실종 아동을 찾습니다",
                description="8세 남자 아이, 파란 점퍼.",
                instruction="112로 신고해 주십시오.",
                areas=[area("나래동", geocodes=[("법정동코드", legal_code)])],
            )
        ],
    )


def homeland(lawd_cd: str) -> bytes:
    """A.1, the homeland security advisory: the whole city, by its 5-digit LAWD_CD."""
    return alert(
        "MOIS-CRISIS-20260101-01",
        sender=MOIS,
        infos=[
            info(
                category="Security",
                event="국가 위기경보",
                urgency="Immediate",
                severity="Severe",
                certainty="Likely",
                headline="국가 위기경보 '경계' 발령",
                description="테러 위협입니다.",
                areas=[area("시험시 전역", geocodes=[("LAWD_CD", lawd_cd)])],
            )
        ],
    )
