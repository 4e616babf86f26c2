"""Real databases for gateway tests (SQLite per test; PostgreSQL per module when reachable) and
an HTTP client for the places and speakers API."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.clock import FakeClock
from gateway.db import create_engine, create_sessions, import_models
from gateway.errors import MaeulError
from gateway.places.models import City
from gateway.places.router import router as places_router
from gateway.settings import Settings
from gateway.speakers.router import router as speakers_router
from tests.support import postgres
from tests.support.people import API_TOKEN, bearer

TOKEN = API_TOKEN
CITY_CODE = "testcity"


async def _create_schema(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(import_models().create_all)
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database with the schema, shared by one test module."""
    with postgres.scratch_database("maeul_test") as name:
        url = postgres.url(name)
        asyncio.run(_create_schema(url))
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'maeul.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def db_sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A session factory on an empty database with the schema: SQLite or PostgreSQL."""
    engine = create_engine(db_url)
    metadata = import_models()
    postgres = db_url.startswith("postgresql")
    try:
        if not postgres:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
        yield create_sessions(engine)
    finally:
        if postgres:
            # The module's database outlives the test: empty it for the next one.
            tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            async with engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        await engine.dispose()


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]
    clock: FakeClock
    city_id: int


def _app(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], clock: FakeClock
) -> FastAPI:
    # Just the routers under test and the gateway's error rendering: no bus, workers or audio.
    app = FastAPI()
    app.state.settings = settings
    app.state.sessions = sessions
    app.state.clock = clock
    app.state.jwt_key = secrets.token_bytes(32)  # access tokens of this app alone

    @app.exception_handler(MaeulError)
    async def _render(_: Request, exc: MaeulError) -> JSONResponse:
        return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status)

    app.include_router(places_router, prefix="/api/v1")
    app.include_router(speakers_router, prefix="/api/v1")
    return app


@pytest.fixture
async def api(db_sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Api]:
    """The places and speakers API over a database holding only the (empty) test city."""
    settings = Settings(
        environment="test",
        database_url="sqlite+aiosqlite://",
        api_token=TOKEN,
        city_code=CITY_CODE,
    )
    clock = FakeClock()
    async with db_sessions() as session:
        city = City(code=CITY_CODE, name="시험시", settings={}, created_at=clock.now())
        session.add(city)
        await session.commit()
    app = _app(settings, db_sessions, clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://gateway",
        headers=bearer(TOKEN),
    ) as client:
        yield Api(app, client, db_sessions, clock, city.id)


@dataclass
class World:
    """Two cities: ``city`` has districts a (villages a1, a2), b (b1, b2) and an empty c; the
    other city has district x with village x1. Speakers: a1 two, a2 one, b1 one, x1 one."""

    city_id: int
    other_city_id: int
    districts: dict[str, int]
    villages: dict[str, int]
    speakers: dict[str, int]


@pytest.fixture
async def world(db_sessions: async_sessionmaker[AsyncSession]) -> World:
    from gateway.places.models import District, Village
    from gateway.speakers.models import Speaker

    now = FakeClock().now()
    async with db_sessions() as session:
        city = City(code="hana", name="하나시", settings={}, created_at=now)
        other = City(code="dul", name="둘시", settings={}, created_at=now)
        session.add_all([city, other])
        await session.flush()
        districts = {
            code: District(city_id=owner.id, code=code, name=f"{code}면", created_at=now)
            for code, owner in (("a", city), ("b", city), ("c", city), ("x", other))
        }
        session.add_all(districts.values())
        await session.flush()
        villages = {
            code: Village(
                city_id=districts[code[0]].city_id,
                district_id=districts[code[0]].id,
                code=code,
                name=f"{code}리",
                created_at=now,
            )
            for code in ("a1", "a2", "b1", "b2", "x1")
        }
        session.add_all(villages.values())
        await session.flush()
        speakers = {
            code: Speaker(
                city_id=villages[code[:2]].city_id,
                district_id=villages[code[:2]].district_id,
                village_id=villages[code[:2]].id,
                code=code,
                kind="loudspeaker",
                codecs=["mp3"] if code == "b1-s1" else ["opus", "mp3"],
                online=False,
                created_at=now,
            )
            for code in ("a1-s1", "a1-s2", "a2-s1", "b1-s1", "x1-s1")
        }
        session.add_all(speakers.values())
        await session.commit()
        return World(
            city_id=city.id,
            other_city_id=other.id,
            districts={k: v.id for k, v in districts.items()},
            villages={k: v.id for k, v in villages.items()},
            speakers={k: v.id for k, v in speakers.items()},
        )
