"""Request and response shapes of login and account administration."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from gateway.auth import Role

Username = Field(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str
    role: Role
    username: str


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


class Me(BaseModel):
    name: str
    role: Role
    user_id: int | None
    district_ids: list[int]
    village_ids: list[int]
    via: str


class UserCreate(BaseModel):
    username: str = Username
    display_name: str = Field(min_length=1, max_length=100)
    role: Role
    password: str | None = Field(default=None, min_length=1, max_length=200)
    district_ids: list[int] = Field(default_factory=list, max_length=1000)
    village_ids: list[int] = Field(default_factory=list, max_length=10_000)


class UserUpdate(BaseModel):
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    role: Role | None = None
    district_ids: list[int] | None = Field(default=None, max_length=1000)
    village_ids: list[int] | None = Field(default=None, max_length=10_000)


class PasswordSet(BaseModel):
    password: str = Field(min_length=1, max_length=200)


class Suspension(BaseModel):
    reason: str = Field(min_length=1, max_length=300)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: Role
    district_ids: list[int]
    village_ids: list[int]
    suspended_at: datetime | None
    suspended_reason: str | None
    last_login_at: datetime | None
    created_at: datetime


class AccountEventRead(BaseModel):
    """One change to an account: who created it, set its password, changed its rights, or
    suspended or re-enabled it (the provenance the two-person rule reads)."""

    model_config = ConfigDict(from_attributes=True)

    kind: str = Field(
        description="created | password_set | role_changed | scope_widened | scope_narrowed | "
        "suspended | reinstated"
    )
    at: datetime
    by_actor: str = Field(
        description="Who did it (`name#id`), `bootstrap-token`, `seed`, or `unknown` for accounts "
        "older than this record"
    )
    by_user_id: int | None


class UserPage(BaseModel):
    items: list[UserRead]
    total: int
    limit: int
    offset: int


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="Shown once: only its hash is kept")
