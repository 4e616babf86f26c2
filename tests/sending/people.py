"""People for the sending tests: a fresh account of any role and area, logged in."""

from __future__ import annotations

import itertools

from gateway.auth import Role
from tests.flow.conftest import Stack
from tests.flow.test_roles import PASSWORD, Person, _login

_names = itertools.count(1)


async def make_person(stack: Stack, role: Role, **scope: list[int]) -> Person:
    username = f"{role.value.replace('_', '-')}-{next(_names)}"
    created = await stack.client.post(
        "/api/v1/users",
        json={
            "username": username,
            "display_name": username,
            "role": role.value,
            "password": PASSWORD,
            **scope,
        },
    )
    assert created.status_code == 201, created.text
    login = await _login(stack, username)
    assert login.status_code == 200, login.text
    body = login.json()
    return Person(username, role, created.json()["id"], body["access_token"], body["refresh_token"])
