"""Seed presets: their shapes, determinism, and that seeding twice changes nothing."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.clock import FakeClock
from gateway.places.models import City, District, Village
from gateway.seed import SeedReport, seed
from gateway.speakers.models import Speaker
from wire.contract import is_valid_segment

Sessions = async_sessionmaker[AsyncSession]


async def _seed(sessions: Sessions, preset: str, city_code: str, rng_seed: int = 7) -> SeedReport:
    async with sessions() as session:
        report = await seed(session, preset=preset, city_code=city_code, rng_seed=rng_seed)  # type: ignore[arg-type]
        await session.commit()
    return report


async def _contents(sessions: Sessions, city_code: str) -> tuple[list[tuple[str, str]], ...]:
    async with sessions() as session:
        city_id = await session.scalar(select(City.id).where(City.code == city_code))
        districts = await session.execute(
            select(District.code, District.name).where(District.city_id == city_id)
        )
        villages = await session.execute(
            select(Village.code, Village.name).where(Village.city_id == city_id)
        )
        speakers = await session.execute(
            select(Speaker.code, Speaker.codecs).where(Speaker.city_id == city_id)
        )
        return (
            sorted((c, n) for c, n in districts),
            sorted((c, n) for c, n in villages),
            sorted((c, ";".join(codecs)) for c, codecs in speakers),
        )


@pytest.mark.parametrize(
    ("preset", "districts", "villages", "per_village", "name"),
    [
        ("jinju", 21, 358, (1, 3), "진주시"),
        ("gimcheon", 22, 568, (1, 3), "김천시"),
        ("tiny", 2, 5, (1, 2), "시험시"),
    ],
)
async def test_preset_shapes(
    db_sessions: Sessions,
    preset: str,
    districts: int,
    villages: int,
    per_village: tuple[int, int],
    name: str,
) -> None:
    report = await _seed(db_sessions, preset, "demo")
    assert (report.created, report.districts, report.villages) == (True, districts, villages)
    district_rows, village_rows, speaker_rows = await _contents(db_sessions, "demo")
    assert len(district_rows) == districts
    assert len(village_rows) == villages
    assert len(speaker_rows) == report.speakers
    assert all(is_valid_segment(code) for code, _ in district_rows + village_rows + speaker_rows)
    names_in_district = Counter((code.split("-")[0], n) for code, n in village_rows)
    assert max(names_in_district.values()) == 1, "a district never has two villages of one name"
    per = Counter(code.rsplit("-", 1)[0] for code, _ in speaker_rows)
    assert set(per) == {code for code, _ in village_rows}
    assert min(per.values()) == per_village[0]
    assert max(per.values()) == per_village[1]
    async with db_sessions() as session:
        assert await session.scalar(select(City.name).where(City.code == "demo")) == name


async def test_jinju_is_shaped_like_jinju(db_sessions: Sessions) -> None:
    await _seed(db_sessions, "jinju", "jinju")
    districts, villages, speakers = await _contents(db_sessions, "jinju")
    assert districts[0] == ("d01", "문산읍")
    assert {"내동면", "일반성면", "천전동", "상대동"} <= {n for _, n in districts}
    assert villages[0][0] == "d01-v001"
    assert villages[0][1].endswith("리")
    assert speakers[0][0] == "d01-v001-s1"
    mp3_only = sum(1 for _, codecs in speakers if codecs == "mp3") / len(speakers)
    assert 0.04 < mp3_only < 0.13
    assert {codecs for _, codecs in speakers} == {"mp3", "opus;mp3"}


async def test_tiny_is_laid_out_the_same_whatever_the_seed(db_sessions: Sessions) -> None:
    await _seed(db_sessions, "tiny", "one", rng_seed=1)
    await _seed(db_sessions, "tiny", "two", rng_seed=2)
    _, _, one = await _contents(db_sessions, "one")
    _, _, two = await _contents(db_sessions, "two")
    assert one == two
    assert [code for code, _ in one] == [
        "d01-v001-s1",
        "d01-v001-s2",
        "d01-v002-s1",
        "d01-v003-s1",
        "d01-v003-s2",
        "d02-v001-s1",
        "d02-v002-s1",
        "d02-v002-s2",
    ]
    assert [code for code, codecs in one if codecs == "mp3"] == ["d02-v002-s2"]


async def test_gimcheon_towns_have_tong(db_sessions: Sessions) -> None:
    await _seed(db_sessions, "gimcheon", "gimcheon")
    districts, villages, _ = await _contents(db_sessions, "gimcheon")
    by_code = dict(districts)
    assert by_code["d16"] == "자산동"
    assert ("d16-v001", "1통") in villages
    assert by_code["d01"] == "아포읍"


async def test_same_seed_same_city_other_seed_other_names(db_sessions: Sessions) -> None:
    await _seed(db_sessions, "jinju", "one", rng_seed=7)
    await _seed(db_sessions, "jinju", "two", rng_seed=7)
    await _seed(db_sessions, "jinju", "three", rng_seed=8)
    one, two, three = [await _contents(db_sessions, code) for code in ("one", "two", "three")]
    assert one == two
    assert one[1] != three[1]
    assert [c for c, _ in one[1]] == [c for c, _ in three[1]], "codes do not depend on the seed"


async def test_seeding_twice_changes_nothing(db_sessions: Sessions) -> None:
    first = await _seed(db_sessions, "tiny", "testcity")
    before = await _contents(db_sessions, "testcity")
    second = await _seed(db_sessions, "jinju", "testcity")
    assert not second.created
    assert (second.districts, second.villages, second.speakers) == (2, 5, first.speakers)
    assert await _contents(db_sessions, "testcity") == before


async def test_a_city_the_gateway_created_is_filled_and_named(db_sessions: Sessions) -> None:
    async with db_sessions() as session:
        session.add(City(code="jinju", name="jinju", settings={}, created_at=FakeClock().now()))
        await session.commit()
    report = await _seed(db_sessions, "jinju", "jinju")
    assert report.created
    async with db_sessions() as session:
        assert await session.scalar(select(func.count()).select_from(City)) == 1
        assert await session.scalar(select(City.name)) == "진주시"


async def test_unknown_presets_and_bad_codes_are_refused(db_sessions: Sessions) -> None:
    async with db_sessions() as session:
        with pytest.raises(ValueError, match="unknown preset"):
            await seed(session, preset="seoul", city_code="x")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="city_code"):
            await seed(session, preset="tiny", city_code="no spaces")
