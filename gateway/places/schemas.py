"""Request and response shapes of the places API: the city, districts, villages and imports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from wire.contract import Segment

Code = Annotated[
    Segment,
    Field(
        description="The id on the wire (MQTT topics): letters, digits, '_' and '-', 1-64 long.",
        examples=["d01-v001"],
    ),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


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


class DistrictCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code
    name: Name = Field(examples=["문산읍"])


class DistrictUpdate(Patch):
    code: Code | SkipJsonSchema[None] = None
    name: Name | SkipJsonSchema[None] = None


class DistrictRead(BaseModel):
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


class VillageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Code
    name: Name = Field(examples=["상촌리"])
    district_id: int


class VillageUpdate(Patch):
    code: Code | SkipJsonSchema[None] = None
    name: Name | SkipJsonSchema[None] = None
    district_id: int | SkipJsonSchema[None] = Field(
        default=None, description="Moving a village moves its speakers with it."
    )


class VillageRead(BaseModel):
    id: int
    code: str
    name: str
    district_id: int
    district_code: str
    district_name: str
    created_at: datetime
    speaker_count: int
    online_count: int = Field(description="Speakers online now.")


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
