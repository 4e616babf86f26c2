"""Areas on the map (a circle, a polygon, national administrative codes) and the places in each.

Pure: no database and no HTTP. An area is built by ``circle``, ``polygon``, ``codes`` or
``area_from_json``, each of which refuses a bad shape with a typed 422 (``AreaRefused``); then
``places_in(area, places)`` answers which of the given places it covers:

- a circle covers a place whose point lies within ``radius_m`` (great-circle distance), or whose
  boundary, when known, comes within it;
- a polygon covers a place whose point lies inside it (or on its edge), or whose boundary, when
  known, intersects it; a polygon whose last point is not its first is closed by this module;
- a 10-digit code covers a place whose own code, or its district's, starts with the code's
  significant part: ``48`` for a province (``4800000000``), ``48170`` for a city or county,
  ``48170250`` for an eup, myeon or dong, the whole code for a ri.

A place without coordinates is never inside a circle or a polygon (only codes reach it).
Coordinates are WGS84 degrees; points are given as ``(lat, lon)``, while boundaries are GeoJSON
(``[lon, lat]``), as that format has them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import shapely
from shapely.geometry import Point, shape
from shapely.geometry import Polygon as ShapelyPolygon

from gateway.errors import InvalidRequest

EARTH_RADIUS_M: Final = 6_371_008.8
MAX_RADIUS_M: Final = 100_000
MAX_POLYGON_POINTS: Final = 2_000
MAX_CODES: Final = 500
CODE_PATTERN: Final = re.compile(r"^[0-9]{10}$")
BOUNDARY_TYPES: Final = ("Polygon", "MultiPolygon")


class AreaRefused(InvalidRequest):
    """A shape that cannot be an area, or an area that reaches no village (422)."""


# --------------------------------------------------------------------------------------------
# Areas


@dataclass(frozen=True)
class Circle:
    lat: float
    lon: float
    radius_m: float


@dataclass(frozen=True)
class Polygon:
    points: tuple[tuple[float, float], ...]  # (lat, lon), closed: the last is the first


@dataclass(frozen=True)
class Codes:
    codes: tuple[str, ...]  # 10 digits each, unique, in the order given


Area = Circle | Polygon | Codes


def _bad_coordinates(lat: object, lon: object) -> AreaRefused:
    return AreaRefused(
        "invalid_coordinates",
        ko=f"좌표가 올바르지 않습니다 (위도 -90~90, 경도 -180~180): {lat}, {lon}",
        en=f"Coordinates out of range (lat -90..90, lon -180..180): {lat}, {lon}",
    )


def _point(lat: object, lon: object) -> tuple[float, float]:
    numbers = [v for v in (lat, lon) if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != 2:
        raise _bad_coordinates(lat, lon)
    la, lo = float(numbers[0]), float(numbers[1])
    if not (math.isfinite(la) and math.isfinite(lo) and -90 <= la <= 90 and -180 <= lo <= 180):
        raise _bad_coordinates(lat, lon)
    return la, lo


def circle(lat: float, lon: float, radius_m: float) -> Circle:
    la, lo = _point(lat, lon)
    if (
        isinstance(radius_m, bool)
        or not isinstance(radius_m, int | float)
        or not math.isfinite(radius_m)
        or not 0 < radius_m <= MAX_RADIUS_M
    ):
        raise AreaRefused(
            "invalid_radius",
            ko=f"반경은 0보다 크고 {MAX_RADIUS_M:,}m 이하여야 합니다: {radius_m}",
            en=f"The radius must be more than 0 and at most {MAX_RADIUS_M} m: {radius_m}",
        )
    return Circle(la, lo, float(radius_m))


def polygon(points: Sequence[Sequence[float]]) -> Polygon:
    """A polygon of ``(lat, lon)`` points, closed here when its last point is not its first."""
    if len(points) > MAX_POLYGON_POINTS:
        raise AreaRefused(
            "invalid_polygon",
            ko=f"다각형의 점이 너무 많습니다 (최대 {MAX_POLYGON_POINTS}개).",
            en=f"The polygon has too many points (at most {MAX_POLYGON_POINTS}).",
        )
    pairs: list[tuple[float, float]] = []
    for point in points:
        if isinstance(point, str | bytes) or len(point) != 2:
            raise AreaRefused(
                "invalid_polygon",
                ko="다각형의 점은 [위도, 경도] 두 수여야 합니다.",
                en="Each polygon point must be two numbers, [lat, lon].",
            )
        pairs.append(_point(point[0], point[1]))
    if pairs and pairs[0] != pairs[-1]:
        pairs.append(pairs[0])
    if len(set(pairs)) < 3:
        raise AreaRefused(
            "invalid_polygon",
            ko="다각형에는 서로 다른 점이 3개 이상 있어야 합니다.",
            en="A polygon needs at least 3 distinct points.",
        )
    planar = _planar(tuple(pairs))
    if not planar.is_valid or _square_metres(planar) < 1:
        raise AreaRefused(
            "invalid_polygon",
            ko="다각형의 변이 서로 교차하거나 넓이가 없습니다.",
            en="The polygon crosses itself or has no area.",
        )
    return Polygon(tuple(pairs))


def codes(values: Sequence[str]) -> Codes:
    if not values or len(values) > MAX_CODES:
        raise AreaRefused(
            "invalid_area",
            ko=f"행정 코드를 1-{MAX_CODES}개 주세요.",
            en=f"Give 1-{MAX_CODES} administrative codes.",
        )
    # A number is refused too: as JSON numbers, codes would lose their leading zeros.
    bad = [str(c) for c in values if not isinstance(c, str) or not CODE_PATTERN.match(c)]
    if bad:
        raise AreaRefused(
            "invalid_area_code",
            ko=f"행정 코드는 숫자 10자리 문자열이어야 합니다: {', '.join(bad[:20])}",
            en=f"Administrative codes are strings of 10 digits: {', '.join(bad[:20])}",
        )
    return Codes(tuple(dict.fromkeys(values)))


def _shape_refused() -> AreaRefused:
    return AreaRefused(
        "invalid_area",
        ko='지역은 {"circle": {"lat", "lon", "radius_m"}}, {"polygon": [[위도, 경도], ...]}, '
        '{"codes": ["10자리 코드", ...]} 중 하나여야 합니다.',
        en='An area is one of {"circle": {"lat", "lon", "radius_m"}}, '
        '{"polygon": [[lat, lon], ...]} or {"codes": ["10-digit code", ...]}.',
    )


def area_from_json(value: object) -> Area:
    """An area from its JSON form (a parsed object, or its text)."""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError:
            raise _shape_refused() from None
    if not isinstance(value, Mapping) or len(value) != 1:
        raise _shape_refused()
    [(kind, body)] = value.items()
    if kind == "circle" and isinstance(body, Mapping) and set(body) == {"lat", "lon", "radius_m"}:
        return circle(body["lat"], body["lon"], body["radius_m"])
    if kind == "polygon" and isinstance(body, list):
        if not all(isinstance(p, list) for p in body):
            raise _shape_refused()
        return polygon(body)
    if kind == "codes" and isinstance(body, list):
        return codes(body)
    raise _shape_refused()


def area_to_json(area: Area) -> dict[str, Any]:
    """The JSON form ``area_from_json`` reads (a polygon closed)."""
    if isinstance(area, Circle):
        return {"circle": {"lat": area.lat, "lon": area.lon, "radius_m": area.radius_m}}
    if isinstance(area, Polygon):
        return {"polygon": [[lat, lon] for lat, lon in area.points]}
    return {"codes": list(area.codes)}


# --------------------------------------------------------------------------------------------
# Places and what covers them


@dataclass(frozen=True)
class Place:
    """A village as areas see it: its point, its national codes and its district's, and its
    boundary (a shapely geometry in lon/lat) when known."""

    id: int
    code: str
    name: str
    district_id: int
    lat: float | None
    lon: float | None
    national_codes: tuple[str, ...] = ()
    boundary: Any = None


def code_prefix(code: str) -> str:
    """The significant part of a 10-digit code: the province, city, eup-myeon-dong or ri."""
    for length in (2, 5, 8):
        if code[length:] == "0" * (10 - length):
            return code[:length]
    return code


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _planar(points: tuple[tuple[float, float], ...]) -> Any:
    return ShapelyPolygon([(lon, lat) for lat, lon in points])


def _metres_around(lat0: float, lon0: float, geometry: Any) -> Any:
    """``geometry`` (lon/lat) in metres east and north of (lat0, lon0): close enough within the
    few tens of kilometres a circle spans."""
    east = math.radians(1) * EARTH_RADIUS_M * math.cos(math.radians(lat0))
    north = math.radians(1) * EARTH_RADIUS_M
    return shapely.transform(geometry, lambda xy: (xy - (lon0, lat0)) * (east, north))


def _square_metres(planar: Any) -> float:
    """A lon/lat polygon's area, roughly (a degenerate one has none)."""
    lat = planar.centroid.y if not planar.is_empty else 0.0
    degree = math.radians(1) * EARTH_RADIUS_M
    return float(planar.area) * degree * degree * math.cos(math.radians(lat))


def _location(place: Place) -> tuple[float, float] | None:
    if place.lat is None or place.lon is None:
        return None
    return place.lat, place.lon


def _in_circle(area: Circle, place: Place) -> bool:
    at = _location(place)
    if at is not None and haversine_m(area.lat, area.lon, *at) <= area.radius_m:
        return True
    if place.boundary is None:
        return False
    near = _metres_around(area.lat, area.lon, place.boundary)
    return bool(near.distance(Point(0.0, 0.0)) <= area.radius_m)


def _in_polygon(planar: Any, place: Place) -> bool:
    at = _location(place)
    if at is not None and planar.covers(Point(at[1], at[0])):
        return True
    return place.boundary is not None and bool(planar.intersects(place.boundary))


def covers(area: Area, place: Place) -> bool:
    if isinstance(area, Circle):
        return _in_circle(area, place)
    if isinstance(area, Polygon):
        return _in_polygon(_planar(area.points), place)
    prefixes = tuple(code_prefix(c) for c in area.codes)
    return any(own.startswith(prefixes) for own in place.national_codes)


def places_in(area: Area, places: Sequence[Place]) -> list[Place]:
    """The places ``area`` covers, in the order given."""
    if isinstance(area, Polygon):
        planar = _planar(area.points)
        return [p for p in places if _in_polygon(planar, p)]
    return [p for p in places if covers(area, p)]


def codes_reaching_nothing(area: Codes, places: Sequence[Place]) -> list[str]:
    """The codes of ``area`` that cover none of ``places`` (unknown here)."""
    return [c for c in area.codes if not places_in(Codes((c,)), places)]


# --------------------------------------------------------------------------------------------
# Boundaries


def boundary_geometry(geojson: Mapping[str, Any]) -> Any:
    """A GeoJSON Polygon or MultiPolygon (lon/lat) as a valid shapely geometry; refused (422
    ``invalid_boundary``) otherwise."""
    refused = AreaRefused(
        "invalid_boundary",
        ko="경계는 GeoJSON Polygon 또는 MultiPolygon([경도, 위도])이고, 변이 교차하지 않아야 "
        "합니다.",
        en="A boundary is a GeoJSON Polygon or MultiPolygon ([lon, lat]) that does not cross "
        "itself.",
    )
    if not isinstance(geojson, Mapping) or geojson.get("type") not in BOUNDARY_TYPES:
        raise refused
    try:
        geometry = shape(geojson)
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        RecursionError,
        shapely.errors.ShapelyError,
    ):
        raise refused from None
    if geometry.is_empty or not geometry.is_valid:
        raise refused
    minx, miny, maxx, maxy = geometry.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise refused
    return geometry
