"""`maeul login`, `logout`, `whoami` and `audit verify`: the CLI's side of accounts and audit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from typing import Annotated

import httpx
import typer
from sqlalchemy.exc import SQLAlchemyError

from maeul import credentials

audit_app = typer.Typer(help="Audit log / 감사 기록", no_args_is_help=True)


def login(
    username: Annotated[str, typer.Option("--username", "-u", prompt="아이디 / username")],
    password: Annotated[
        str, typer.Option(prompt="비밀번호 / password", hide_input=True, help="Asked when omitted")
    ],
    url: Annotated[
        str | None, typer.Option(help="The gateway, e.g. https://maeul.city.go.kr")
    ] = None,
) -> None:
    """Log in and keep the login for later commands (renewed automatically until revoked)."""
    base = (url or credentials.saved().get("url") or credentials.DEFAULT_URL).rstrip("/")
    try:
        response = httpx.post(
            f"{base}/api/v1/auth/token",
            data={"username": username, "password": password},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        typer.echo(f"게이트웨이에 연결할 수 없습니다 / cannot reach {base}: {exc}", err=True)
        raise typer.Exit(1) from None
    if response.status_code != 200:
        detail = response.json().get("detail", response.text) if response.content else ""
        typer.echo(f"로그인 실패 / login failed: {detail}", err=True)
        raise typer.Exit(1)
    body = response.json()
    where = credentials.save(
        base, body["access_token"], refresh_token=body["refresh_token"], who=username
    )
    typer.echo(f"{username} ({body['role']}) 로그인했습니다 / logged in; saved in {where}")


def logout() -> None:
    """Revoke the saved refresh token and forget the login."""
    stored = credentials.saved()
    refresh = stored.get("refresh_token")
    if refresh and stored.get("url"):
        # Forgotten locally all the same when the gateway is away; the token expires on its own.
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                f"{stored['url']}/api/v1/auth/logout", json={"refresh_token": refresh}, timeout=10
            )
    credentials.forget()
    typer.echo("로그아웃했습니다 / logged out")


def whoami() -> None:
    """Who the saved login (or GATEWAY_API_TOKEN) is, and their rights."""
    url, token = credentials.resolve()
    response = httpx.get(
        f"{url}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    if response.status_code != 200:
        typer.echo(f"확인 실패 / failed: {response.text}", err=True)
        raise typer.Exit(1)
    typer.echo(json.dumps(response.json(), ensure_ascii=False))


@audit_app.command("verify")
def verify(
    database_url: Annotated[
        str | None,
        typer.Option(help="Read the chain straight from this database (default: the gateway's)"),
    ] = None,
) -> None:
    """Recompute the audit log's hash chain; exit 1 naming the first altered or missing row."""
    from gateway.audit import service as audit
    from gateway.db import create_engine, create_sessions
    from gateway.settings import Settings

    if database_url:
        os.environ["GATEWAY_DATABASE_URL"] = database_url
    os.environ.setdefault("GATEWAY_ENVIRONMENT", "development")
    settings = Settings()

    async def check() -> audit.Verification:
        engine = create_engine(settings.database_url)
        try:
            async with create_sessions(engine)() as session:
                return await audit.verify(session)
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(check())
    except (OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        typer.echo(f"감사 기록을 읽을 수 없습니다 / cannot read the audit log: {reason}", err=True)
        raise typer.Exit(2) from None
    if result.ok:
        typer.echo(f"감사 기록 {result.rows}건, 변조 없음 / audit log intact: {result.rows} rows")
        return
    typer.echo(
        f"감사 기록 변조 발견: {result.first_bad_seq}번 행 ({result.problem}) / "
        f"audit log altered at row {result.first_bad_seq}: {result.problem}",
        err=True,
    )
    raise typer.Exit(1)
