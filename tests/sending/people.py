"""People for the sending tests: a fresh account of any role and area, logged in."""

from __future__ import annotations

import itertools

from gateway.auth import Role
from tests.flow.conftest import Stack
from tests.flow.test_roles import Person, sign_up

_names = itertools.count(1)


async def make_person(stack: Stack, role: Role, **scope: list[int]) -> Person:
    return await sign_up(stack, f"{role.value.replace('_', '-')}-{next(_names)}", role, **scope)
