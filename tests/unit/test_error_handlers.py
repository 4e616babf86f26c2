"""How the database's errors reach a client: a broken constraint is a conflict, logged whole;
a database that cannot be reached is a 503."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError, OperationalError

from gateway.error_handlers import install_handlers


def _app() -> FastAPI:
    app = FastAPI()
    install_handlers(app)

    @app.post("/conflict")
    async def conflict() -> None:
        raise IntegrityError(
            "INSERT INTO audio_assets ...",
            {},
            Exception("UNIQUE constraint failed: audio_assets.sha256"),
        )

    @app.post("/gone")
    async def gone() -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    return app


async def _post(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        return await client.post(path)


async def test_a_broken_constraint_is_a_conflict_and_names_the_constraint_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="gateway.error_handlers")
    response = await _post("/conflict")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "write_conflict"
    assert "다시 시도" in body["detail"]
    assert "try again" in body["detail"]
    assert "audio_assets" not in response.text, "the schema stays in the log"
    [record] = [r for r in caplog.records if r.name == "gateway.error_handlers"]
    assert record.levelno == logging.ERROR
    assert "UNIQUE constraint failed: audio_assets.sha256" in record.getMessage()
    assert "POST /conflict" in record.getMessage()
    assert record.exc_info is not None


async def test_a_database_out_of_reach_is_still_unavailable() -> None:
    response = await _post("/gone")
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
