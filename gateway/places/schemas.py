"""Request and response shapes of the places API: the city, districts, villages and imports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from gateway.places.areas import boundary_geometry
from wire.contract import Segment

Code = Annotated[
    Segment,
    Field(
        description="The id on the wire (MQTT topics): letters, digits, '_' and '-', 1-64 long.",
        examples=["d01-v001"],
    ),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Lat = Annotated[float, Field(ge=-90, le=90, description="Latitude, WGS84 degrees.")]
Lon = Annotated[float, Field(ge=-180, le=180, description="Longitude, WGS84 degrees.")]
NationalCode = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{10}$",
        description="A 10-digit national administrative code (법정동 or 행정동 code).",
        examples=["4817025021"],
    ),
]


def _checked_boundary(value: dict[str, object]) -> dict[str, object]:
    boundary_geometry(value)
    return value


Boundary = Annotated[
    dict[str, object],
    AfterValidator(_checked_boundary),
    Field(
        description="A GeoJSON Polygon or MultiPolygon ([lon, lat] positions) that does not "
        "cross itself.",
        examples=[
            {
                "type": "Polygon",
                "coordinates": [[[128.1, 35.2], [128.11, 35.2], [128.11, 35.21], [128.1, 35.2]]],
            }
        ],
    ),
]
GEO_FIELDS = ("lat", "lon", "legal_code", "admin_code", "boundary")


class GeoCreate(BaseModel):
    """Where a place is, each part optional; a point needs both lat and lon."""

    lat: Lat | None = None
    lon: Lon | None = None
    legal_code: NationalCode | None = Field(None, description="Its 10-digit 법정동 code.")
    admin_code: NationalCode | None = Field(None, description="Its 10-digit 행정동 code.")
    boundary: Boundary | None = None

    @model_validator(mode="after")
    def _lat_with_lon(self) -> GeoCreate:
        if (self.lat is None) != (self.lon is None):
            raise ValueError("lat and lon go together")
        return self


class GeoRead(BaseModel):
    lat: float | None = Field(description="Latitude, WGS84 degrees (null: not known).")
    lon: float | None = Field(description="Longitude, WGS84 degrees (null: not known).")
    legal_code: str | None = Field(description="The 10-digit 법정동 code.")
    admin_code: str | None = Field(description="The 10-digit 행정동 code.")
    boundary: dict[str, object] | None = Field(description="GeoJSON Polygon or MultiPolygon.")


class Patch(BaseModel):
    """A partial update: fields left out stay as they are; null only where a field allows it
    (elsewhere the schema hides the null that is only the Python default)."""

    model_config = ConfigDict(extra="forbid")
    nullable: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Patch:
        for name in self.model_fields_set:
            if getattr(self, name) is None and name not in self.nullable:
                raise ValueError(f"{name} may be left out but not set to null")
        return self


class CityRead(BaseModel):
    id: int
    code: str
    name: str
    timezone: str
    district_count: int
    village_count: int
    speaker_count: int
    online_count: int = Field(description="Speakers online now.")


class DistrictCreate(GeoCreate):
    model_config = ConfigDict(extra="forbid")

    code: Code
    name: Name = Field(examples=["문산읍"])


class GeoPatch(Patch):
    """Geography fields of a partial update: null clears one; lat and lon change together."""

    nullable = frozenset(GEO_FIELDS)

    lat: Lat | None = None
    lon: Lon | None = None
    legal_code: NationalCode | None = None
    admin_code: NationalCode | None = None
    boundary: Boundary | None = None

    @model_validator(mode="after")
    def _lat_with_lon(self) -> GeoPatch:
        if ("lat" in self.model_fields_set) != ("lon" in self.model_fields_set) or (
            (self.lat is None) != (self.lon is None)
        ):
            raise ValueError("lat and lon go together")
        return self


class DistrictUpdate(GeoPatch):
    code: Code | SkipJsonSchema[None] = None
    name: Name | SkipJsonSchema[None] = None


class DistrictRead(GeoRead):
    id: int
    code: str
    name: str
    created_at: datetime
    village_count: int
    speaker_count: int
    online_count: int = Field(description="Speakers online now.")


class DistrictPage(BaseModel):
    items: list[DistrictRead]
    total: int
    limit: int
    offset: int


_LANGUAGES_DOC = (
    "The languages its speakers read after Korean, BCP 47 primary tags in order "
    '(["vi", "zh"]); empty: the city\'s (GATEWAY_SPOKEN_LANGUAGES). An unknown tag, or "ko", '
    "is 422 unknown_language."
)
Languages = Annotated[list[Annotated[str, StringConstraints(max_length=35)]], Field(max_length=20)]


class VillageCreate(GeoCreate):
    model_config = ConfigDict(extra="forbid")

    code: Code
    name: Name = Field(examples=["상촌리"])
    district_id: int
    languages: Languages = Field(default_factory=list, description=_LANGUAGES_DOC)


class VillageUpdate(GeoPatch):
    code: Code | SkipJsonSchema[None] = None
    name: Name | SkipJsonSchema[None] = None
    district_id: int | SkipJsonSchema[None] = Field(
        default=None, description="Moving a village moves its speakers with it."
    )
    languages: Languages | SkipJsonSchema[None] = Field(default=None, description=_LANGUAGES_DOC)


class VillageRead(GeoRead):
    id: int
    code: str
    name: str
    district_id: int
    district_code: str
    district_name: str
    created_at: datetime
    speaker_count: int
    online_count: int = Field(description="Speakers online now.")
    languages: list[str] = Field(
        description="The languages set for it, read after Korean; empty: the city's."
    )


class VillagePage(BaseModel):
    items: list[VillageRead]
    total: int
    limit: int
    offset: int


class PlacesImportReport(BaseModel):
    rows: int
    districts_created: int
    districts_updated: int
    villages_created: int
    villages_updated: int = Field(description="Renamed or moved to another district.")


class CircleArea(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lat: float = Field(examples=[35.18])
    lon: float = Field(examples=[128.08])
    radius_m: float = Field(description="More than 0, at most 100000.", examples=[3000])


class AreaQuery(BaseModel):
    """Exactly one of a circle, a polygon or a list of national codes."""

    model_config = ConfigDict(extra="forbid")

    circle: CircleArea | None = None
    polygon: list[list[float]] | None = Field(
        None,
        description="[lat, lon] points, 3 to 2000 distinct; closed by the gateway when the "
        "last point is not the first; must not cross itself.",
        examples=[[[35.17, 128.05], [35.17, 128.1], [35.2, 128.1], [35.2, 128.05]]],
    )
    codes: list[str] | None = Field(
        None,
        description="10-digit 법정동/행정동 codes; a province's, city's or district's code "
        "covers the villages under it.",
        examples=[["4817025000"]],
    )


class AreaVillage(BaseModel):
    id: int
    code: str
    name: str
    district_id: int
    lat: float | None
    lon: float | None


class AreaPreview(BaseModel):
    area: dict[str, object] = Field(description="The area as it is applied (a polygon closed).")
    total: int
    villages: list[AreaVillage]
    outside_scope: list[int] = Field(
        description="Ids of the villages the caller may not send to: a send to this area "
        "would be refused (403 outside_scope)."
    )
