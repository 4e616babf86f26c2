"""The places service the broadcast code builds on: the city, targets and wire codes."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.errors import InvalidRequest, NotFound
from gateway.places import service as places
from tests.gateway.conftest import World

Sessions = async_sessionmaker[AsyncSession]


async def _resolve(
    sessions: Sessions,
    *,
    all_villages: bool = False,
    district_ids: tuple[int, ...] = (),
    village_ids: tuple[int, ...] = (),
) -> places.ResolvedTarget:
    async with sessions() as session:
        city = await places.get_city(session, "hana")
        return await places.resolve_targets(
            session,
            city,
            all_villages=all_villages,
            district_ids=district_ids,
            village_ids=village_ids,
        )


async def test_get_city_by_code(db_sessions: Sessions, world: World) -> None:
    async with db_sessions() as session:
        assert (await places.get_city(session, "hana")).id == world.city_id
        with pytest.raises(NotFound) as caught:
            await places.get_city(session, "nowhere")
    assert caught.value.code == "city_not_found"


async def test_all_villages_means_every_village_of_the_city_only(
    db_sessions: Sessions, world: World
) -> None:
    target = await _resolve(db_sessions, all_villages=True)
    assert target.all
    d, v = world.districts, world.villages
    assert target.district_ids == tuple(sorted([d["a"], d["b"], d["c"]]))
    assert target.village_ids == tuple(sorted([v["a1"], v["a2"], v["b1"], v["b2"]]))


async def test_all_wins_over_ids_even_unknown_ones(db_sessions: Sessions, world: World) -> None:
    target = await _resolve(
        db_sessions, all_villages=True, district_ids=(world.districts["a"],), village_ids=(999,)
    )
    assert target.all
    assert len(target.village_ids) == 4


async def test_whole_districts_expand_to_their_villages(
    db_sessions: Sessions, world: World
) -> None:
    d, v = world.districts, world.villages
    target = await _resolve(db_sessions, district_ids=(d["b"], d["a"], d["b"]))
    assert not target.all
    assert target.district_ids == tuple(sorted([d["a"], d["b"]]))
    assert target.village_ids == tuple(sorted([v["a1"], v["a2"], v["b1"], v["b2"]]))


async def test_villages_inside_a_targeted_district_are_not_repeated(
    db_sessions: Sessions, world: World
) -> None:
    d, v = world.districts, world.villages
    target = await _resolve(
        db_sessions, district_ids=(d["a"],), village_ids=(v["b1"], v["a1"], v["b1"])
    )
    assert target.district_ids == (d["a"],)
    assert target.village_ids == tuple(sorted([v["a1"], v["a2"], v["b1"]]))


async def test_an_empty_district_is_a_valid_target(db_sessions: Sessions, world: World) -> None:
    target = await _resolve(db_sessions, district_ids=(world.districts["c"],))
    assert target.district_ids == (world.districts["c"],)
    assert target.village_ids == ()


async def test_unknown_or_foreign_districts_are_named(db_sessions: Sessions, world: World) -> None:
    foreign = world.districts["x"]
    with pytest.raises(NotFound) as caught:
        await _resolve(db_sessions, district_ids=(world.districts["a"], foreign, 9999))
    assert caught.value.code == "district_not_found"
    assert str(foreign) in caught.value.detail
    assert "9999" in caught.value.detail
    assert str(world.districts["a"]) not in caught.value.message_en


async def test_unknown_or_foreign_villages_are_named(db_sessions: Sessions, world: World) -> None:
    foreign = world.villages["x1"]
    with pytest.raises(NotFound) as caught:
        await _resolve(db_sessions, village_ids=(world.villages["a1"], foreign))
    assert caught.value.code == "village_not_found"
    assert str(foreign) in caught.value.detail


async def test_nothing_targeted_is_refused(db_sessions: Sessions, world: World) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await _resolve(db_sessions)
    assert caught.value.code == "empty_target"
    assert caught.value.status == 422


async def test_codes_for_ids(db_sessions: Sessions, world: World) -> None:
    v, d = world.villages, world.districts
    async with db_sessions() as session:
        villages = await places.village_codes(session, [v["a1"], v["b2"], v["a1"], 9999])
        districts = await places.district_codes(session, [d["a"], d["c"]])
    assert villages == {v["a1"]: ("a1", "a1리", d["a"]), v["b2"]: ("b2", "b2리", d["b"])}
    assert districts == {d["a"]: "a", d["c"]: "c"}


async def test_long_id_lists_are_queried_in_chunks(
    db_sessions: Sessions, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(places, "IN_CHUNK", 2)
    v = world.villages
    target = await _resolve(db_sessions, village_ids=(v["a1"], v["a2"], v["b1"], v["b2"]))
    assert len(target.village_ids) == 4
    async with db_sessions() as session:
        assert len(await places.village_codes(session, target.village_ids)) == 4
