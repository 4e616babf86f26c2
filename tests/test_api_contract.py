"""The API against its own OpenAPI schema: generated requests never get a 5xx, and answers match.

Schemathesis reads the schema the app serves, generates requests for every operation (valid
and invalid ones) and sends them in process, as the city administrator (the bootstrap token)
and as a district officer (a JWT). Any 5xx is a bug: a validation gap or an unhandled error.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, CheckContext, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from gateway.app import create_app
from gateway.bus import FakeBus
from gateway.clock import FakeClock
from gateway.settings import Settings
from tests.support.databases import seed_database
from tests.support.people import PASSWORD, access_token_now, bearer

TOKEN = "contract-token-" + "x" * 24
# Operations left out: an event stream that lasts as long as its broadcast, and a readiness
# probe whose 503 (no broker in this test) is its documented answer.
EXCLUDED = ("follow_broadcast", "ready")


def success_schema_conformance(
    ctx: CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """Successful answers match their schema. Errors are rendered as ``{"error", "detail",
    "fields"}`` while the schema still names FastAPI's default 422 body, so they are not
    validated here."""
    if response.status_code >= 400:
        return None
    return response_schema_conformance(ctx, response, case)


CHECKS = [not_a_server_error, success_schema_conformance, content_type_conformance]


def _district_officer_token(app: Any) -> str:
    """Make a district officer for the first district and log them in, through the API."""
    admin = bearer(TOKEN)
    with asgi.get_client(app) as client:
        districts = client.get("/api/v1/districts", headers=admin).json()["items"]
        username = f"officer-{secrets.token_hex(3)}"
        created = client.post(
            "/api/v1/users",
            headers=admin,
            json={
                "username": username,
                "display_name": "구역 담당",
                "role": "district_officer",
                "password": PASSWORD,
                "district_ids": [districts[0]["id"]],
            },
        )
        assert created.status_code == 201, created.text
        return access_token_now(client, username)


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    root: Path = tmp_path_factory.mktemp("contract")
    database_url = f"sqlite+aiosqlite:///{root / 'maeul.db'}"
    settings = Settings(
        environment="test",
        database_url=database_url,
        data_dir=root / "data",
        api_token=TOKEN,
        city_code="testcity",
        background_workers=False,
        status_cache_s=0,
        # Generated requests come fast; the limits have tests of their own.
        rate_limit_user_per_hour=0,
        rate_limit_village_notices_per_hour=0,
        push_vapid_subject="mailto:ops@maeul.example.go.kr",
        push_subscriptions_per_minute=10_000,
    )
    asyncio.run(seed_database(database_url, preset="tiny", city_code=settings.city_code))
    app = create_app(settings, bus=FakeBus(), clock=FakeClock())
    tokens = {"city_admin": TOKEN, "district_officer": _district_officer_token(app)}
    try:
        yield app, tokens
    finally:
        asgi.shutdown_lifespans()


generated = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _exercise(operation: APIOperation, headers: dict[str, str]) -> None:
    @given(
        case=st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )
    )
    @generated
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


@pytest.mark.parametrize("who", ["city_admin", "district_officer"])
def test_api_honours_its_schema(contract: tuple[Any, dict[str, str]], who: str) -> None:
    app, tokens = contract
    headers = bearer(tokens[who])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    tried = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.definition.raw.get("operationId") in EXCLUDED:
            continue
        tried += 1
        try:
            _exercise(operation, headers)
        except (
            Exception,
            BaseExceptionGroup,
        ) as exc:  # every operation runs; all failures are reported together
            failures.append(f"{operation.label}: {exc}")
    assert tried > 30
    assert not failures, "\n\n".join(failures)
