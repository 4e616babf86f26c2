"""Demo accounts for `make run`: one person per role, with fresh passwords printed at start."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.auth import Role
from gateway.places.models import City, District, Village
from gateway.users import service
from gateway.users.models import User


@dataclass(frozen=True)
class DemoLogin:
    role: Role
    username: str
    password: str
    display_name: str
    scope: str


async def ensure_demo_users(session: AsyncSession, city: City, *, now: datetime) -> list[DemoLogin]:
    """Create (or reset the passwords of) one demo account per role; returns their logins.

    Only for the local demo: production accounts are created by an administrator.
    """
    district = await session.scalar(
        select(District).where(District.city_id == city.id).order_by(District.id).limit(1)
    )
    village = (
        await session.scalar(
            select(Village)
            .where(Village.city_id == city.id, Village.district_id == district.id)
            .order_by(Village.id)
            .limit(1)
        )
        if district is not None
        else None
    )
    plan: list[tuple[Role, str, str, list[int], list[int], str]] = [
        (Role.CITY_ADMIN, "admin", "시청 관리자", [], [], "시 전체"),
        (Role.SAFETY_OFFICER, "safety", "시 안전총괄과", [], [], "시 전체, 재난 방송"),
        (Role.AUDITOR, "auditor", "개인정보 감사", [], [], "읽기 전용"),
    ]
    if district is not None:
        plan += [
            (
                Role.DISTRICT_OFFICER,
                "district",
                f"{district.name} 담당",
                [district.id],
                [],
                district.name,
            ),
            (
                Role.POLICE_OFFICER,
                "police",
                f"{district.name} 파출소",
                [district.id],
                [],
                f"{district.name}, 범죄 예방",
            ),
        ]
    if village is not None:
        plan.append(
            (Role.VILLAGE_HEAD, "ijang", f"{village.name} 이장", [], [village.id], village.name)
        )
    logins = []
    for role, username, name, districts, villages, scope in plan:
        password = secrets.token_urlsafe(12)
        user = await session.scalar(
            select(User).where(User.city_id == city.id, User.username == username)
        )
        if user is None:
            await service.create_user(
                session,
                city,
                username=username,
                display_name=name,
                role=role,
                password=password,
                district_ids=districts,
                village_ids=villages,
                by=None,
                now=now,
            )
        else:
            await service.set_password(session, user, password, by=None, now=now)
        logins.append(DemoLogin(role, username, password, name, scope))
    return logins
