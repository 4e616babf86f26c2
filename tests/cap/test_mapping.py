"""The CAP mapping table and the reading of areas, without a gateway."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cap.mapping import DEFAULT_RULES, Mapped, MappingRule, map_info, rules_table
from gateway.cap.reading import Info, read_alert
from gateway.cap.xsd import parse
from gateway.places.areas import AreaRefused, Circle, Codes, Polygon
from gateway.settings import Settings
from tests.cap import documents as cap
from wire.contract import Category

README = Path(__file__).resolve().parents[2] / "README.md"


def _info(**fields: object) -> Info:
    base: dict[str, object] = {
        "language": "ko-KR",
        "categories": ("Met",),
        "event": "호우",
        "urgency": "Immediate",
        "severity": "Severe",
        "certainty": "Observed",
        "headline": None,
        "description": None,
        "instruction": None,
        "expires": None,
        "areas": (),
    }
    return Info(**{**base, **fields})  # type: ignore[arg-type]


def test_the_readme_shows_the_default_table() -> None:
    assert rules_table() in README.read_text(encoding="utf-8")


def test_the_default_table_and_a_citys_own() -> None:
    assert map_info(_info(), None) == Mapped(Category.DISASTER, repeat=True)
    assert map_info(_info(urgency="Expected"), None) == Mapped(Category.DISASTER, repeat=False)
    assert map_info(_info(categories=("Rescue",)), None).category is Category.CRIME_PREVENTION
    assert map_info(_info(severity="Moderate"), None).category is Category.ADMINISTRATIVE
    own = [MappingRule(categories=["met"], severity=["Moderate"], category=Category.DISASTER)]
    assert map_info(_info(severity="Moderate"), own).category is Category.DISASTER
    assert map_info(_info(categories=("Fire",)), own).category is Category.ADMINISTRATIVE
    assert DEFAULT_RULES[-1].matches(_info(categories=("Other",)))
    with pytest.raises(ValueError, match="category"):
        Settings(environment="test", cap_mapping=[{"categories": ["Met"]}])


def test_areas_are_read_in_caps_forms() -> None:
    where = cap.area(
        "여러 곳",
        polygons=[cap.polygon([(35.19, 128.07), (35.19, 128.12), (35.23, 128.12)])],
        circles=["35.2,128.1 1.5"],
        geocodes=[("LAWD_CD", "48990"), ("ADM_CD", "48990510"), ("SAME", "006109")],
    )
    document = cap.alert(
        "A-1",
        sender=cap.KMA,
        infos=[
            cap.info(
                category="Met",
                event="호우",
                urgency="Immediate",
                severity="Severe",
                certainty="Observed",
                headline="호우",
                description="많은 비",
                areas=[where],
            )
        ],
    )
    alert = read_alert(parse(document))
    [info] = alert.infos
    polygon, circle, codes = info.areas
    assert isinstance(polygon, Polygon)
    assert polygon.points[0] == polygon.points[-1] == (35.19, 128.07)
    assert circle == Circle(35.2, 128.1, 1500.0)
    assert codes == Codes(("4899000000", "4899051000"))
    assert alert.sent_key == "2025-12-31T23:58:00Z"
    with pytest.raises(AreaRefused, match="invalid_area_code"):
        read_alert(parse(document.replace(b"48990<", b"4899<")))
