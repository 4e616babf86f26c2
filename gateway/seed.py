"""Demo and test data: a city's districts, villages and speakers generated from a named preset."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import product
from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.places import bulk
from gateway.places import service as places
from gateway.places.csv_import import PlaceRow
from gateway.places.models import City
from gateway.residents.crypto import PhoneCipher
from gateway.seed_households import HouseholdShape, HouseholdsReport, seed_households
from gateway.speakers.bulk import SpeakerRow, upsert_speakers
from gateway.speakers.schemas import Codec
from gateway.templates import service as templates
from wire.contract import is_valid_segment

Preset = Literal["jinju", "gimcheon", "tiny"]

# Share of seeded speakers that declare they can only play MP3 (older receivers).
MP3_ONLY_SHARE: Final = 0.08


@dataclass(frozen=True)
class SeedReport:
    created: bool
    districts: int
    villages: int
    speakers: int
    templates: int = 0  # seeded announcement templates added this time
    households: int = 0
    receivers: int = 0  # indoor receivers, in households (not counted in speakers)
    residents: int = 0  # with a synthetic phone number


@dataclass(frozen=True)
class _Shape:
    city_name: str
    # (district name, number of villages); a 동's villages are named by `urban`.
    districts: tuple[tuple[str, int], ...]
    speakers_per_village: tuple[int, int]
    urban: Literal["마을", "통"] = "마을"
    # A fixed layout instead of a drawn one: speakers of each village in order, and the
    # speakers that play MP3 only.
    layout: tuple[int, ...] | None = None
    mp3_only: frozenset[str] = frozenset()
    # Where: the city's centre (lat, lon), how far its districts spread (m), and its national
    # code (2 digits of province, 3 of city or county).
    centre: tuple[float, float] = (35.18, 128.08)
    spread_m: float = 14_000
    national: str = "48170"
    # Homes seeded when the caller gives a phone cipher (`gateway.seed_households`).
    households: HouseholdShape | None = None


# 진주시: 1 읍, 15 면 and the 동 of the old town (358 villages on the wireless system).
_JINJU = _Shape(
    city_name="진주시",
    districts=(
        ("문산읍", 24),
        ("내동면", 18),
        ("정촌면", 20),
        ("금곡면", 19),
        ("진성면", 20),
        ("일반성면", 17),
        ("이반성면", 22),
        ("사봉면", 19),
        ("지수면", 16),
        ("대곡면", 20),
        ("금산면", 22),
        ("집현면", 21),
        ("미천면", 18),
        ("명석면", 21),
        ("대평면", 13),
        ("수곡면", 17),
        ("천전동", 11),
        ("성북동", 9),
        ("중앙동", 10),
        ("상봉동", 11),
        ("상대동", 10),
    ),
    speakers_per_village=(1, 3),
)

# 김천시: 1 읍, 14 면 and 7 동 (568 통·리).
_GIMCHEON = _Shape(
    city_name="김천시",
    districts=(
        ("아포읍", 30),
        ("농소면", 20),
        ("남면", 22),
        ("개령면", 21),
        ("감문면", 27),
        ("어모면", 26),
        ("봉산면", 24),
        ("대항면", 25),
        ("감천면", 16),
        ("조마면", 19),
        ("구성면", 27),
        ("지례면", 22),
        ("부항면", 14),
        ("대덕면", 22),
        ("증산면", 13),
        ("자산동", 36),
        ("평화남산동", 38),
        ("양금동", 30),
        ("대신동", 34),
        ("대곡동", 40),
        ("지좌동", 32),
        ("율곡동", 30),
    ),
    speakers_per_village=(1, 3),
    urban="통",
    centre=(36.14, 128.11),
    spread_m=16_000,
    national="47150",
    # All 56,000 households of its 읍·면·동, a third with an indoor receiver, half with a
    # resident's (synthetic) number.
    households=HouseholdShape(households=56_000, receiver_share=1 / 3, phone_share=1 / 2),
)

# For tests, laid out the same whatever the seed: 8 speakers, d01-v001 has two, d01-v002 one,
# and only the last speaker plays MP3 alone.
_TINY = _Shape(
    city_name="시험시",
    districts=(("가람면", 3), ("나래동", 2)),
    speakers_per_village=(1, 2),
    layout=(2, 1, 2, 1, 2),
    mp3_only=frozenset({"d02-v002-s2"}),
    centre=(35.2, 128.1),
    spread_m=3_000,
    national="48990",
)

PRESETS: Final[dict[str, _Shape]] = {"jinju": _JINJU, "gimcheon": _GIMCHEON, "tiny": _TINY}

# Two syllables make a village name (상촌리, 송정마을, ...): 56 x 26 unique names per city.
_FIRST: Final = (
    "가감갈고관구금남노대덕도동마명문미백봉북사산상새"
    "서석선소송신안양연오옥용우운원월유율은장정죽중지진청평하학한화효"
)
_SECOND: Final = "계곡교당동두림매명봉산성수암양원월전정천촌치평포현호"


def _village_names(shape: _Shape, rng: random.Random) -> list[list[str]]:
    stems = iter(rng.sample([a + b for a, b in product(_FIRST, _SECOND)], k=_stems_needed(shape)))
    names: list[list[str]] = []
    for district, count in shape.districts:
        if district.endswith("동"):
            if shape.urban == "통":
                names.append([f"{n}통" for n in range(1, count + 1)])
            else:
                names.append([f"{next(stems)}마을" for _ in range(count)])
        else:
            names.append([f"{next(stems)}리" for _ in range(count)])
    return names


def _stems_needed(shape: _Shape) -> int:
    return sum(
        count
        for district, count in shape.districts
        if not (district.endswith("동") and shape.urban == "통")
    )


_GOLDEN_ANGLE: Final = math.pi * (3 - math.sqrt(5))
_METRES_PER_DEGREE: Final = 111_195.0


def _spiral(k: int, n: int, radius_m: float) -> tuple[float, float]:
    """The k-th of n points spread evenly over a disc (metres east, north of its centre)."""
    r = radius_m * math.sqrt((k + 0.5) / n)
    return r * math.cos(k * _GOLDEN_ANGLE), r * math.sin(k * _GOLDEN_ANGLE)


def _offset(at: tuple[float, float], east_m: float, north_m: float) -> tuple[float, float]:
    lat = at[0] + north_m / _METRES_PER_DEGREE
    lon = at[1] + east_m / (_METRES_PER_DEGREE * math.cos(math.radians(at[0])))
    return round(lat, 6), round(lon, 6)


def _geography(shape: _Shape) -> list[list[PlaceRow]]:
    """Plausible points and national codes for each district's villages (no boundaries): 동
    near the centre, 읍 and 면 around them, villages spread around their district's point. A
    읍 or 면 and its 리 have 법정동 codes (the 읍·면's is also its 행정동 code); a 동 has a 법정동
    and a 행정동 code, its 통 or 마을 none of their own."""
    count = len(shape.districts)
    order = sorted(range(count), key=lambda d: not shape.districts[d][0].endswith("동"))
    seen = {"읍": 0, "면": 0, "동": 0}
    rows: list[list[PlaceRow]] = []
    for d, (district, villages) in enumerate(shape.districts):
        kind = district[-1]
        nth = seen[kind]
        seen[kind] += 1
        if kind == "동":
            legal, admin = f"{shape.national}{101 + nth}00", f"{shape.national}{510 + 10 * nth}00"
        else:
            base = 250 if kind == "읍" else 310
            legal = admin = f"{shape.national}{base + 10 * nth}00"
        centre = _offset(shape.centre, *_spiral(order.index(d), count, shape.spread_m))
        cloud = 0.85 * shape.spread_m / math.sqrt(count) * (0.5 if kind == "동" else 1.0)
        district_geo: dict[str, object] = {
            "lat": centre[0],
            "lon": centre[1],
            "legal_code": legal,
            "admin_code": admin,
        }
        row: list[PlaceRow] = []
        for v in range(villages):
            lat, lon = _offset(centre, *_spiral(v, villages, cloud))
            geo: dict[str, object] = {"lat": lat, "lon": lon}
            if kind != "동":
                geo["legal_code"] = f"{legal[:8]}{21 + v:02d}"
            row.append(PlaceRow(0, "", "", "", "", geo=geo, district_geo=district_geo))
        rows.append(row)
    return rows


def _rows(shape: _Shape, rng: random.Random) -> tuple[list[PlaceRow], list[SpeakerRow]]:
    place_rows: list[PlaceRow] = []
    speaker_rows: list[SpeakerRow] = []
    low, high = shape.speakers_per_village
    layout = iter(shape.layout) if shape.layout else None
    geography = _geography(shape)
    for d, ((district, _), villages) in enumerate(
        zip(shape.districts, _village_names(shape, rng), strict=True), start=1
    ):
        for v, village in enumerate(villages, start=1):
            village_code = f"d{d:02d}-v{v:03d}"
            place_rows.append(
                replace(
                    geography[d - 1][v - 1],
                    line=len(place_rows) + 2,
                    district_code=f"d{d:02d}",
                    district_name=district,
                    village_code=village_code,
                    village_name=village,
                )
            )
            count = next(layout) if layout else rng.randint(low, high)
            for s in range(1, count + 1):
                code = f"{village_code}-s{s}"
                mp3_only = code in shape.mp3_only if layout else rng.random() < MP3_ONLY_SHARE
                codecs: tuple[Codec, ...] = ("mp3",) if mp3_only else ("opus", "mp3")
                speaker_rows.append(
                    SpeakerRow(
                        line=len(speaker_rows) + 2,
                        code=code,
                        village_code=village_code,
                        kind="loudspeaker",
                        codecs=codecs,
                    )
                )
    return place_rows, speaker_rows


async def seed(
    session: AsyncSession,
    *,
    preset: Preset,
    city_code: str,
    rng_seed: int = 7,
    now: datetime | None = None,
    cipher: PhoneCipher | None = None,
    consent_days: int = 730,
) -> SeedReport:
    """Fill the city with a preset's districts, villages and speakers, unless it has villages
    already (then they are left alone and ``created`` is False). The seeded announcement
    templates the city lacks are added either way. With `cipher`, the preset's households too
    (their residents' numbers sealed with it). The caller commits."""
    shape = PRESETS.get(preset)
    if shape is None:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if not is_valid_segment(city_code):
        raise ValueError("city_code must match [A-Za-z0-9_-]{1,64}")
    now = now or datetime.now(UTC)
    city = await session.scalar(select(City).where(City.code == city_code))
    if city is None:
        city = City(code=city_code, name=shape.city_name, settings={}, created_at=now)
        session.add(city)
        await session.flush()
    existing = await places.describe_city(session, city)
    if existing.village_count:
        return SeedReport(
            created=False,
            districts=existing.district_count,
            villages=existing.village_count,
            speakers=existing.speaker_count,
            templates=await templates.seed_templates(session, city, now=now),
        )
    if city.name == city.code:
        # The gateway names a city it creates on first start after its code; give it a real name.
        city.name = shape.city_name
    place_rows, speaker_rows = _rows(shape, random.Random(rng_seed))
    report = await bulk.upsert_places(session, city, place_rows, now=now)
    await upsert_speakers(session, city.id, speaker_rows, now=now)
    homes = HouseholdsReport(0, 0, 0)
    if cipher is not None and shape.households is not None:
        homes = await seed_households(
            session,
            city,
            shape.households,
            cipher,
            rng=random.Random(rng_seed),
            now=now,
            consent_days=consent_days,
        )
    return SeedReport(
        created=True,
        districts=report.districts_created,
        villages=report.villages_created,
        speakers=len(speaker_rows),
        templates=await templates.seed_templates(session, city, now=now),
        households=homes.households,
        receivers=homes.receivers,
        residents=homes.residents,
    )
