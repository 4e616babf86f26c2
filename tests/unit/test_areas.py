"""The areas' geometry: exactly the places inside each shape, and every bad shape refused."""

from __future__ import annotations

import math
from typing import Any

import pytest

from gateway.places import areas
from gateway.places.areas import AreaRefused, Circle, Codes, Place

# A grid of places 1 km apart around (35.2, 128.1): place (i, j) lies i km north, j km east.
LAT0, LON0 = 35.2, 128.1
KM_LAT = 1000 / 111_195.0
KM_LON = KM_LAT / math.cos(math.radians(LAT0))


def _at(north_km: float, east_km: float) -> tuple[float, float]:
    return LAT0 + north_km * KM_LAT, LON0 + east_km * KM_LON


def _grid() -> list[Place]:
    places = []
    for i in range(-2, 3):
        for j in range(-2, 3):
            lat, lon = _at(i, j)
            places.append(
                Place(
                    id=(i + 2) * 5 + (j + 2) + 1,
                    code=f"v{i}{j}",
                    name=f"{i},{j}",
                    district_id=1 if j < 0 else 2,
                    lat=lat,
                    lon=lon,
                )
            )
    return places


def _names(places: list[Place]) -> set[str]:
    return {p.name for p in places}


def _refused(code: str, value: Any) -> None:
    with pytest.raises(AreaRefused) as caught:
        areas.area_from_json(value)
    assert (caught.value.code, caught.value.status) == (code, 422)
    assert caught.value.message_ko
    assert caught.value.message_en


def test_haversine_is_the_great_circle_distance() -> None:
    # One degree of latitude along a meridian, and Seoul to Busan (about 325 km).
    assert areas.haversine_m(35, 128, 36, 128) == pytest.approx(111_195, rel=1e-3)
    assert areas.haversine_m(37.5665, 126.978, 35.1796, 129.0756) == pytest.approx(
        325_000, rel=0.01
    )


def test_a_circle_takes_the_places_within_its_radius() -> None:
    grid = _grid()
    centre = _at(0, 0)
    # 1 km: the centre and its four neighbours; the diagonals (1.414 km) stay out.
    one_km = areas.circle(*centre, 1001)
    assert _names(areas.places_in(one_km, grid)) == {"0,0", "1,0", "-1,0", "0,1", "0,-1"}
    assert _names(areas.places_in(areas.circle(*centre, 999), grid)) == {"0,0"}
    diagonal = _names(areas.places_in(areas.circle(*centre, 1420), grid))
    assert diagonal == {"0,0", "1,0", "-1,0", "0,1", "0,-1", "1,1", "1,-1", "-1,1", "-1,-1"}
    # Off-centre, at a corner: only the corner and what lies within 1 km of it.
    corner = areas.circle(*_at(2, 2), 1001)
    assert _names(areas.places_in(corner, grid)) == {"2,2", "1,2", "2,1"}


def test_a_polygon_takes_the_places_inside_or_on_its_edge_whether_closed_or_not() -> None:
    grid = _grid()
    # A square from (-0.5, -0.5) to (1.5, 1.5) km: rows 0 and 1, columns 0 and 1.
    square = [_at(-0.5, -0.5), _at(-0.5, 1.5), _at(1.5, 1.5), _at(1.5, -0.5)]
    open_ring = areas.polygon(square)
    closed_ring = areas.polygon([*square, square[0]])
    assert open_ring == closed_ring, "closed by the module when the last point is not the first"
    assert open_ring.points[0] == open_ring.points[-1]
    assert _names(areas.places_in(open_ring, grid)) == {"0,0", "0,1", "1,0", "1,1"}
    # A triangle whose southern edge runs along row 0: places on the edge are inside.
    triangle = areas.polygon([_at(0, -2.5), _at(0, 2.5), _at(2.5, 0)])
    assert _names(areas.places_in(triangle, grid)) == {
        "0,-2", "0,-1", "0,0", "0,1", "0,2", "1,-1", "1,0", "1,1", "2,0"
    }  # fmt: skip


def test_a_place_without_coordinates_is_reached_through_its_boundary_or_codes_only() -> None:
    lat, lon = _at(5, 5)  # far from every shape below
    nowhere = Place(1, "n", "nowhere", 1, None, None, ("4817025021",))
    # A 200 m square boundary centred 3 km north of the grid's centre.
    b = 0.1
    ring = [_at(3 - b, -b), _at(3 - b, b), _at(3 + b, b), _at(3 + b, -b), _at(3 - b, -b)]
    boundary = areas.boundary_geometry(
        {"type": "Polygon", "coordinates": [[[lo, la] for la, lo in ring]]}
    )
    fenced = Place(2, "f", "fenced", 1, lat, lon, (), boundary)
    places = [nowhere, fenced]
    centre = _at(0, 0)
    # The boundary's nearest edge is 2.9 km from the centre; its point is 7 km away.
    assert _names(areas.places_in(areas.circle(*centre, 2950), places)) == {"fenced"}
    assert _names(areas.places_in(areas.circle(*centre, 2850), places)) == set()
    # A polygon that overlaps the boundary's corner, not the point.
    overlap = areas.polygon([_at(2.5, -1), _at(2.5, -0.05), _at(2.95, -0.05), _at(2.95, -1)])
    assert _names(areas.places_in(overlap, places)) == {"fenced"}
    short = areas.polygon([_at(2.5, -1), _at(2.5, -0.05), _at(2.85, -0.05), _at(2.85, -1)])
    assert areas.places_in(short, places) == []
    assert _names(areas.places_in(areas.codes(["4817025000"]), places)) == {"nowhere"}


def test_codes_cover_what_lies_under_them() -> None:
    def place(name: str, *codes: str) -> Place:
        return Place(len(name), name, name, 1, None, None, codes)

    ri = place("ri", "4817025021", "4817025000")  # a 리, and its 읍's code
    other_ri = place("other", "4817025022", "4817025000")
    dong = place("dong", "4817010100", "4817051000")  # a 동's 통: its 동's two codes
    gimcheon = place("gimcheon", "4715025021", "4715025000")
    places = [ri, other_ri, dong, gimcheon]

    def covered(*codes: str) -> set[str]:
        return _names(areas.places_in(areas.codes(list(codes)), places))

    assert covered("4817025021") == {"ri"}
    assert covered("4817025000") == {"ri", "other"}
    assert covered("4817051000") == {"dong"}  # the 행정동 code
    assert covered("4817000000") == {"ri", "other", "dong"}
    assert covered("4800000000") == {"ri", "other", "dong"}
    assert covered("4700000000", "4817010100") == {"gimcheon", "dong"}
    assert covered("4817025023") == set()
    assert areas.codes_reaching_nothing(
        Codes(("4817025023", "4817025021", "1100000000")), places
    ) == ["4817025023", "1100000000"]
    assert [areas.code_prefix(c) for c in ("4800000000", "4817000000", "4817025000")] == [
        "48",
        "48170",
        "48170250",
    ]


def test_the_json_form_round_trips() -> None:
    for value in (
        {"circle": {"lat": 35.18, "lon": 128.08, "radius_m": 3000}},
        {"polygon": [[35.1, 128.0], [35.1, 128.1], [35.2, 128.1], [35.1, 128.0]]},
        {"codes": ["4817025000", "4817031000"]},
    ):
        area = areas.area_from_json(value)
        assert areas.area_to_json(area) == value
        assert areas.area_from_json(areas.area_to_json(area)) == area
    assert areas.area_from_json('{"circle": {"lat": 35, "lon": 128, "radius_m": 5}}') == Circle(
        35.0, 128.0, 5.0
    )
    # Duplicate codes count once.
    assert areas.area_from_json({"codes": ["4817025000", "4817025000"]}) == Codes(("4817025000",))


def test_bad_shapes_are_refused_with_stable_codes() -> None:
    square = [[35.1, 128.0], [35.1, 128.1], [35.2, 128.1], [35.2, 128.0]]
    for value in (
        "not json",
        "[]",
        {},
        {"circle": {"lat": 35, "lon": 128, "radius_m": 5}, "codes": ["4817025000"]},
        {"square": square},
        {"circle": {"lat": 35, "lon": 128}},
        {"circle": {"lat": 35, "lon": 128, "radius_m": 5, "extra": 1}},
        {"polygon": "35,128;36,128"},
        {"codes": []},
        {"codes": ["4817025000"] * 0 + [f"48170{n:05d}" for n in range(501)]},
    ):
        _refused("invalid_area", value)
    for radius in (0, -5, 100_001, 1e12, math.inf, math.nan, True, "5"):
        _refused("invalid_radius", {"circle": {"lat": 35, "lon": 128, "radius_m": radius}})
    for lat, lon in ((91, 128), (-90.5, 128), (35, 180.01), (35, -181), (math.nan, 128)):
        _refused("invalid_coordinates", {"circle": {"lat": lat, "lon": lon, "radius_m": 10}})
        _refused("invalid_coordinates", {"polygon": [[lat, lon], *square[1:]]})
    for lat in ("north", "35.2", None, True):
        _refused("invalid_coordinates", {"circle": {"lat": lat, "lon": 128, "radius_m": 10}})
    bowtie = [[35.1, 128.0], [35.2, 128.1], [35.1, 128.1], [35.2, 128.0]]
    for points in (
        [],
        square[:2],
        [*square[:2], square[0]],  # closed, but two distinct points
        [square[0], square[0], square[0], square[0]],
        [[35.1, 128.0], [35.15, 128.05], [35.2, 128.1]],  # on one line: no area
        bowtie,
        [[35.1, 128.0, 5.0], *square[1:]],
        [[35.1], *square[1:]],
        [[35.1 + i * 1e-6, 128.0] for i in range(areas.MAX_POLYGON_POINTS + 1)],
    ):
        _refused("invalid_polygon", {"polygon": points})
    for code in ("123", "48170250001", "481702500a", "", " 4817025000"):
        _refused("invalid_area_code", {"codes": [code]})
    _refused("invalid_area_code", {"codes": [4817025000]})


def test_boundaries_are_valid_geojson_polygons() -> None:
    good = {"type": "Polygon", "coordinates": [[[128.1, 35.2], [128.2, 35.2], [128.2, 35.3]]]}
    multi = {"type": "MultiPolygon", "coordinates": [good["coordinates"]]}
    assert areas.boundary_geometry(good).area > 0
    assert areas.boundary_geometry(multi).area > 0
    for bad in (
        {"type": "Point", "coordinates": [128.1, 35.2]},
        {"type": "Polygon", "coordinates": "nope"},
        {"type": "Polygon", "coordinates": [[[128.1, 35.2], [128.2, 35.2]]]},
        {"type": "Polygon", "coordinates": [[[128, 35], [128.1, 35.1], [128.1, 35], [128, 35.1]]]},
        {"type": "Polygon", "coordinates": [[[200, 35], [201, 35], [201, 36]]]},
        {"type": "Polygon"},
        {"coordinates": good["coordinates"]},
    ):
        with pytest.raises(AreaRefused) as caught:
            areas.boundary_geometry(bad)
        assert caught.value.code == "invalid_boundary"
