"""People in tests: accounts of any role made through the API, their logins and bearer tokens."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.auth import Role

PASSWORD = "correct-horse-battery"
# The bootstrap API token a test's gateway is given (GATEWAY_API_TOKEN): the city's administrator.
API_TOKEN = "test-token-" + "x" * 24

_names = itertools.count(1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Person:
    username: str
    role: Role
    user_id: int
    token: str
    refresh: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)


async def create_user(
    client: httpx.AsyncClient,
    username: str,
    role: Role,
    *,
    display_name: str | None = None,
    password: str = PASSWORD,
    headers: dict[str, str] | None = None,
    **scope: Any,
) -> int:
    """An account made by whoever ``headers`` name (the client's own by default); its id."""
    created = await client.post(
        "/api/v1/users",
        json={
            "username": username,
            "display_name": display_name or username,
            "role": role.value,
            "password": password,
            **scope,
        },
        headers=headers or {},
    )
    assert created.status_code == 201, created.text
    user_id: int = created.json()["id"]
    return user_id


async def log_in(
    client: httpx.AsyncClient,
    username: str,
    password: str = PASSWORD,
    *,
    forwarded_for: str | None = None,
) -> httpx.Response:
    """The login's response, sent without the client's own token (and, behind a trusted proxy,
    from the source ``forwarded_for`` names)."""
    headers = {"Authorization": ""}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return await client.post(
        "/api/v1/auth/token", data={"username": username, "password": password}, headers=headers
    )


async def access_token(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    login = await log_in(client, username, password)
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


def access_token_now(client: httpx.Client, username: str, password: str = PASSWORD) -> str:
    """`access_token` for a synchronous client."""
    login = client.post(
        "/api/v1/auth/token",
        data={"username": username, "password": password},
        headers={"Authorization": ""},
    )
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


async def signed_in(
    client: httpx.AsyncClient, username: str, role: Role, user_id: int, password: str = PASSWORD
) -> Person:
    """An existing account, logged in afresh."""
    login = await log_in(client, username, password)
    assert login.status_code == 200, login.text
    body = login.json()
    return Person(username, role, user_id, body["access_token"], body["refresh_token"])


async def sign_up(
    client: httpx.AsyncClient,
    username: str,
    role: Role,
    *,
    headers: dict[str, str] | None = None,
    **scope: Any,
) -> Person:
    """An account made by whoever ``headers`` name (the client's own by default), signed in."""
    user_id = await create_user(client, username, role, headers=headers, **scope)
    return await signed_in(client, username, role, user_id)


async def make_person(client: httpx.AsyncClient, role: Role, **scope: Any) -> Person:
    """A fresh account of `role` and area, under a name no other test of the process uses."""
    return await sign_up(client, f"{role.value.replace('_', '-')}-{next(_names)}", role, **scope)
