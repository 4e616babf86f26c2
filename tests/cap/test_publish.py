"""Every broadcast is a CAP 1.2 document valid against the OASIS schema: each mode, each way of
targeting (circle, polygon, codes, villages with and without boundaries), text or recording,
an all clear, a resend, a cancel and a delivery report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from gateway.broadcasts.models import Broadcast
from gateway.cap import publish, report
from gateway.cap.xsd import NS, parse
from gateway.places.models import City
from gateway.settings import Settings

SETTINGS = Settings(environment="test", city_code="jinju", public_url="https://maeul.example")
CITY = City(id=1, code="jinju", name="진주시", timezone="Asia/Seoul")
SENT = datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC)
BOUNDARY = {
    "type": "Polygon",
    "coordinates": [[[128.05, 35.2], [128.06, 35.2], [128.06, 35.21], [128.05, 35.2]]],
}
PLACES = [
    publish.PlaceFacts(
        id=7,
        name="신기리",
        district_name="명석면",
        lat=35.205,
        lon=128.055,
        codes=((publish.LEGAL_CODE, "4817035021"), (publish.ADMIN_CODE, "4817035000")),
        boundary=BOUNDARY,
    ),
    publish.PlaceFacts(
        id=8,
        name="관지리",
        district_name="명석면",
        lat=35.215,
        lon=128.065,
        codes=((publish.LEGAL_CODE, "4817035022"),),
        boundary=None,
    ),
    publish.PlaceFacts(
        id=9, name="새마을", district_name="명석면", lat=None, lon=None, codes=(), boundary=None
    ),
]
AREAS: dict[str, dict[str, object]] = {
    "villages": {},
    "circle": {"area": {"circle": {"lat": 35.2, "lon": 128.05, "radius_m": 2500.0}}},
    "polygon": {
        "area": {"polygon": [[35.19, 128.04], [35.19, 128.07], [35.22, 128.07], [35.19, 128.04]]}
    },
    "codes": {"area": {"codes": ["4817035000", "4817035022"]}},
}


def _broadcast(
    mode: str, target: dict[str, object], text: str | None, **extra: object
) -> Broadcast:
    return Broadcast(
        id="b" * 32,
        city_id=1,
        command_id="c" * 32,
        category=str(extra.pop("category", "disaster")),
        priority=40,
        mode=mode,
        title="산불 경보",
        text=text,
        target={"all": False, "resolved_village_ids": [7, 8, 9], **target},
        duration_ms=2000,
        audio_sha256={},
        created_by="박담당",
        created_at=SENT,
        expires_at=SENT + timedelta(hours=1),
        **extra,
    )


def _text(root: etree._Element, path: str) -> list[str]:
    return [e.text or "" for e in root.iterfind(path, NS)]


@pytest.mark.parametrize("mode", ["live", "exercise", "test"])
@pytest.mark.parametrize("shape", sorted(AREAS))
@pytest.mark.parametrize("text", ["산 가까이 가지 마세요", None])
def test_every_broadcast_is_a_valid_cap_alert(mode: str, shape: str, text: str | None) -> None:
    broadcast = _broadcast(mode, AREAS[shape], text)
    document = publish.serialize(publish.build_alert(SETTINGS, CITY, broadcast, PLACES))
    root = parse(document)  # the schema again, from the bytes another system reads
    assert _text(root, "cap:identifier") == [f"urn:maeul:jinju:{'b' * 32}"]
    assert _text(root, "cap:sender") == ["maeul@jinju"]
    assert _text(root, "cap:sent") == ["2026-12-06T10:02:03+09:00"]
    assert _text(root, "cap:status") == [publish.STATUS_OF_MODE[mode]]
    assert _text(root, "cap:msgType") == ["Alert"]
    assert _text(root, "cap:info/cap:category") == ["Safety"]
    assert _text(root, "cap:info/cap:urgency") == ["Immediate"]
    assert _text(root, "cap:info/cap:headline") == ["산불 경보"]
    assert _text(root, "cap:info/cap:description") == [text or "(음성 방송)"]
    assert _text(root, "cap:info/cap:web") == [f"https://maeul.example/notices/7#notice-{'b' * 32}"]
    assert b"\xeb\xb0\x95\xeb\x8b\xb4\xeb\x8b\xb9" not in document  # no sender's name (박담당)
    geocodes = _text(root, "cap:info/cap:area/cap:geocode/cap:value")
    assert {"4817035021", "4817035022"} <= set(geocodes)
    polygons = _text(root, "cap:info/cap:area/cap:polygon")
    circles = _text(root, "cap:info/cap:area/cap:circle")
    if shape == "villages":
        assert _text(root, "cap:info/cap:area/cap:areaDesc") == [
            "명석면 신기리",
            "명석면 관지리",
            "명석면 새마을",
        ]
        assert polygons == ["35.2,128.05 35.2,128.06 35.21,128.06 35.2,128.05"]
        assert circles == ["35.215,128.065 0"]
    elif shape == "circle":
        assert circles == ["35.2,128.05 2.5"]
        assert polygons == []
    elif shape == "polygon":
        assert polygons == ["35.19,128.04 35.19,128.07 35.22,128.07 35.19,128.04"]
    else:
        names = _text(root, "cap:info/cap:area/cap:geocode/cap:valueName")
        assert ("ADMIN_DONG_CODE", "4817035000") in set(zip(names, geocodes, strict=True))
        assert polygons
        assert not circles
    if shape != "villages":
        [desc] = _text(root, "cap:info/cap:area/cap:areaDesc")
        assert desc == "명석면 신기리, 명석면 관지리, 명석면 새마을"


@pytest.mark.parametrize("category", ["crime_prevention", "administrative", "village_notice"])
def test_categories_map_to_cap(category: str) -> None:
    broadcast = _broadcast("live", {}, "안내", category=category)
    root = publish.build_alert(SETTINGS, CITY, broadcast, PLACES[:1])
    mapping = publish.CATEGORY_TABLE[publish.Category(category)]
    assert _text(root, "cap:info/cap:category") == [mapping.cap_category]
    assert _text(root, "cap:info/cap:urgency") == [mapping.urgency]
    assert _text(root, "cap:info/cap:severity") == [mapping.severity]


def test_an_all_clear_is_an_update_referencing_the_alert() -> None:
    clear = _broadcast("live", {}, "산불 경보를 해제합니다.", all_clear_of="a" * 32)
    reference = publish.Reference(f"urn:maeul:jinju:{'a' * 32}", SENT - timedelta(hours=2))
    root = parse(
        publish.serialize(
            publish.build_alert(
                SETTINGS, CITY, clear, PLACES, references=[reference], all_clear=True
            )
        )
    )
    assert _text(root, "cap:msgType") == ["Update"]
    assert _text(root, "cap:references") == [
        f"maeul@jinju,urn:maeul:jinju:{'a' * 32},2026-12-06T08:02:03+09:00"
    ]
    assert _text(root, "cap:info/cap:responseType") == ["AllClear"]
    assert _text(root, "cap:info/cap:urgency") == ["Past"]


def test_a_cancel_and_a_delivery_report_reference_the_alert() -> None:
    broadcast = _broadcast("exercise", {}, None)
    cancel = parse(
        publish.serialize(publish.build_cancel(SETTINGS, CITY, broadcast, SENT + timedelta(1)))
    )
    assert _text(cancel, "cap:msgType") == ["Cancel"]
    assert _text(cancel, "cap:status") == ["Exercise"]
    assert _text(cancel, "cap:identifier") == [f"urn:maeul:jinju:{'b' * 32}:cancel"]
    found = report.DeliveryReport(
        identifier=f"urn:maeul:jinju:{'b' * 32}:report:20261206T020000",
        references=f"maeul@jinju,urn:maeul:jinju:{'b' * 32},2026-12-06T10:02:03+09:00",
        alert=f"urn:maeul:jinju:{'b' * 32}",
        sent=SENT,
        villages=[
            report.VillageReport(
                village_id=7,
                code="d01-v001",
                name="신기리",
                legal_code="4817035021",
                outcome="played",
                speakers=2,
                played=2,
            )
        ],
    )
    ack = parse(publish.serialize(report.report_document(SETTINGS, CITY, broadcast, found)))
    assert _text(ack, "cap:msgType") == ["Ack"]
    assert _text(ack, "cap:scope") == ["Restricted"]
    assert _text(ack, "cap:note") == ["4817035021 played 2/2 신기리"]
    assert _text(ack, "cap:references") == [found.references]
