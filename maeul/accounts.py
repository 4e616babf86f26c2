"""`maeul login`, `logout`, `whoami`, `audit verify` and `audit checkpoint-key`: the CLI's side
of accounts and audit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import httpx
import typer
from sqlalchemy.exc import SQLAlchemyError

from maeul import credentials

if TYPE_CHECKING:
    from gateway.audit.checkpoints import Checkpoint
    from gateway.settings import Settings

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
    base = (url or credentials.current_url()).rstrip("/")
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
    credentials.forget(stored.get("url") or credentials.current_url())
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


# Plain database URLs and the async drivers the gateway reads them with.
_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def _async_url(url: str) -> str:
    scheme, found, rest = url.partition("://")
    driver = _ASYNC_DRIVERS.get(scheme.lower()) if found else None
    if driver is None:
        typer.echo(
            "데이터베이스 주소는 sqlite:///경로 또는 postgresql://사용자:암호@호스트/DB 형식이어야 "
            "합니다 / the database URL must be sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST/DB (or their +aiosqlite, +asyncpg forms)",
            err=True,
        )
        raise typer.Exit(2)
    return f"{driver}://{rest}"


def _local_settings(database_url: str | None = None) -> Settings:
    from pydantic import ValidationError

    from gateway.settings import Settings

    if database_url:
        os.environ["GATEWAY_DATABASE_URL"] = _async_url(database_url)
    os.environ.setdefault("GATEWAY_ENVIRONMENT", "development")
    try:
        return Settings()
    except ValidationError as exc:
        problem = "; ".join(str(error["msg"]) for error in exc.errors())
        typer.echo(f"설정이 올바르지 않습니다 / bad settings: {problem}", err=True)
        raise typer.Exit(2) from None


@audit_app.command("checkpoint-key")
def checkpoint_key() -> None:
    """Print the public key of the audit checkpoints (base64), from this machine's
    GATEWAY_AUDIT_CHECKPOINT_KEY; keep it where the database's writers cannot change it."""
    from gateway.audit import checkpoints
    from gateway.keyfiles import SecretError

    try:
        key = checkpoints.signing_key(_local_settings())
    except SecretError as exc:
        typer.echo(
            f"체크포인트 키를 읽을 수 없습니다 / cannot read the checkpoint key: {exc}", err=True
        )
        raise typer.Exit(2) from None
    typer.echo(checkpoints.public_key_text(key.public_key()))


def _checkpoints(files: list[Path], public_key: str | None) -> tuple[Checkpoint, ...]:
    from gateway.audit import checkpoints
    from gateway.keyfiles import SecretError

    try:
        key = (
            checkpoints.parse_public_key(public_key)
            if public_key
            else checkpoints.signing_key(_local_settings()).public_key()
        )
    except (ValueError, SecretError) as exc:
        typer.echo(f"공개 키가 올바르지 않습니다 / bad public key: {exc}", err=True)
        raise typer.Exit(2) from None
    found: list[Checkpoint] = []
    for path in files:
        try:
            read = checkpoints.read_file(path, key)
        except OSError as exc:
            typer.echo(f"체크포인트 파일을 읽을 수 없습니다 / cannot read {path}: {exc}", err=True)
            raise typer.Exit(2) from None
        if read.forged:
            typer.echo(
                f"서명이 맞지 않는 체크포인트 {read.forged}건 / {read.forged} checkpoint line(s) "
                f"in {path} do not carry a valid signature",
                err=True,
            )
            raise typer.Exit(1)
        if read.other_key:
            typer.echo(
                f"다른 키의 체크포인트 {read.other_key}건은 건너뜀 / skipped {read.other_key} "
                f"checkpoint(s) signed by another key",
                err=True,
            )
        found += read.valid
    if files and not found:
        typer.echo("확인할 체크포인트가 없습니다 / no checkpoint signed by this key", err=True)
        raise typer.Exit(1)
    return tuple(found)


@audit_app.command("verify")
def verify(
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Read the chain straight from this database, sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST/DB (default: the gateway's)"
        ),
    ] = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoints",
            help="A file of signed checkpoints (the gateway's, or log lines); may be repeated",
        ),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(help="Their public key, base64 (default: from this machine's key)"),
    ] = None,
) -> None:
    """Recompute the audit log's hash chain, and hold it against signed checkpoints kept
    outside the database; exit 1 naming the first altered or missing row (or, for a chain
    sealed again, the checkpointed segment the rewrite lies in). `--database-url` takes
    sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB."""
    from gateway.audit import service as audit
    from gateway.db import create_engine, create_sessions

    settings = _local_settings(database_url)
    anchors = _checkpoints(list(checkpoints or []), public_key)

    async def check() -> audit.Verification:
        engine = create_engine(settings.database_url)
        try:
            async with create_sessions(engine)() as session:
                return await audit.verify(session, checkpoints=anchors)
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(check())
    except (OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        typer.echo(f"감사 기록을 읽을 수 없습니다 / cannot read the audit log: {reason}", err=True)
        raise typer.Exit(2) from None
    if result.ok:
        typer.echo(
            f"감사 기록 {result.rows}건, 변조 없음 (체크포인트 {result.checkpoints}건 확인) / "
            f"audit log intact: {result.rows} rows, {result.checkpoints} checkpoint(s) matched"
        )
        return
    typer.echo(
        f"감사 기록 변조 발견: {result.first_bad_seq}번 행 ({result.problem}) / "
        f"audit log altered at row {result.first_bad_seq}: {result.problem}",
        err=True,
    )
    raise typer.Exit(1)
