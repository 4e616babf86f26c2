"""The database: declarative base, engine and session factory, the request-owned session, and
what runs after a commit."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import DateTime, MetaData, Table, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, SessionTransaction
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored in UTC and always come back timezone-aware, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _driver_errors() -> tuple[type[Exception], ...]:
    try:
        import asyncpg  # type: ignore[import-untyped]
    except ImportError:
        return ()
    return (asyncpg.PostgresError, asyncpg.InterfaceError)


# Errors a driver raises while connecting, outside SQLAlchemy's translation to DB-API errors.
_CONNECT_ERRORS: tuple[type[Exception], ...] = (OSError, TimeoutError, *_driver_errors())


# SQLite keeps a page cache per connection, filled as the database grows and kept while the
# connection lives: with up to 15 connections in the pool (5, and 10 more under load) at
# SQLite's default of 2,000 KiB each, that is 30 MiB arriving over hundreds of broadcasts.
# Bounded here on purpose; a page not held is read again from the operating system's cache.
SQLITE_CACHE_KIB: Final = 1024


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            # WAL lets readers (status pages) run while the ack writer commits.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cursor.close()

        return engine
    engine = create_async_engine(
        url, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True, pool_timeout=10
    )

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(dialect: Dialect, _record: Any, cargs: Any, cparams: Any) -> Any:
        # asyncpg's own errors while connecting (server refusing, database not accepting
        # connections, network gone) escape SQLAlchemy's translation; made DB-API errors here,
        # they reach the API as 503 and the background loops as an outage, like any other.
        try:
            return dialect.connect(*cargs, **cparams)
        except _CONNECT_ERRORS as exc:
            error: type[Exception] = dialect.loaded_dbapi.OperationalError
            raise error(f"cannot connect to the database: {exc}") from exc

    return engine


# Session.info keys: the app's hooks (shared by every session of one factory), and the tables
# the current transaction inserted rows into.
_HOOKS: Final = "maeul.after_commit"
_INSERTED: Final = "maeul.inserted"


@dataclass
class AfterCommit:
    """What to call after a transaction that inserted rows into a table commits, by table.

    One per session factory (one per app), carried in each session's ``info``: several apps in
    one process keep theirs apart. The listeners below are registered once, on the Session
    class, and do nothing for a session without hooks. A rolled back transaction calls nothing;
    a savepoint rolled back inside a committed one may leave a needless call, so callbacks are
    cheap and harmless to repeat (waking a loop that then finds nothing to do).
    """

    _callbacks: dict[str, list[Callable[[], None]]] = field(default_factory=dict)

    def on_insert(self, model: type[Base], callback: Callable[[], None]) -> None:
        self._callbacks.setdefault(str(model.__tablename__), []).append(callback)

    def watches(self, table: str) -> bool:
        return table in self._callbacks

    def run(self, tables: set[str]) -> None:
        for table in sorted(tables):
            for callback in self._callbacks.get(table, ()):
                # The transaction is committed whatever a callback does: never fail the caller.
                try:
                    callback()
                except Exception:
                    log.exception("a callback after a commit into %s failed", table)


def create_sessions(
    engine: AsyncEngine, *, after_commit: AfterCommit | None = None
) -> async_sessionmaker[AsyncSession]:
    info = {} if after_commit is None else {_HOOKS: after_commit}
    return async_sessionmaker(engine, expire_on_commit=False, info=info)


def _note_insert(session: Session, table: str) -> None:
    hooks: AfterCommit | None = session.info.get(_HOOKS)
    if hooks is not None and hooks.watches(table):
        session.info.setdefault(_INSERTED, set()).add(table)


@event.listens_for(Session, "after_flush")
def _note_flushed(session: Session, _context: Any) -> None:
    """Rows added as objects (still in ``session.new`` until the flush is over)."""
    if _HOOKS not in session.info:
        return
    for instance in session.new:
        for table in inspect(instance).mapper.tables:
            _note_insert(session, table.name)


@event.listens_for(Session, "do_orm_execute")
def _note_executed(state: ORMExecuteState) -> None:
    """Rows inserted by a statement (``session.execute(insert(Model), rows)``)."""
    if _HOOKS not in state.session.info or not state.is_insert:
        return
    table = getattr(state.statement, "table", None)
    if isinstance(table, Table):
        _note_insert(state.session, table.name)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the transaction around it may still roll back
    inserted: set[str] | None = session.info.pop(_INSERTED, None)
    hooks: AfterCommit | None = session.info.get(_HOOKS)
    if inserted and hooks is not None:
        hooks.run(inserted)


@event.listens_for(Session, "after_transaction_end")
def _forget_inserts(session: Session, transaction: SessionTransaction) -> None:
    """A rolled back (or closed) transaction's inserts never happened."""
    if transaction.parent is None:
        session.info.pop(_INSERTED, None)


def import_models() -> MetaData:
    """Import every model module so that the metadata is complete (for Alembic and tests)."""
    from gateway import ratelimits as _ratelimits  # noqa: F401
    from gateway import signing as _signing  # noqa: F401
    from gateway.approvals import models as _approvals  # noqa: F401
    from gateway.audit import models as _audit  # noqa: F401
    from gateway.broadcasts import models as _broadcasts  # noqa: F401
    from gateway.cap import models as _cap  # noqa: F401
    from gateway.deliveries import models as _deliveries  # noqa: F401
    from gateway.devicesec import models as _devicesec  # noqa: F401
    from gateway.enrollment import models as _enrollment  # noqa: F401
    from gateway.fallback import models as _fallback  # noqa: F401
    from gateway.live import models as _live  # noqa: F401
    from gateway.officer_alerts import models as _officer_alerts  # noqa: F401
    from gateway.places import models as _places  # noqa: F401
    from gateway.push import models as _push  # noqa: F401
    from gateway.residents import models as _residents  # noqa: F401
    from gateway.schedules import models as _schedules  # noqa: F401
    from gateway.sms import models as _sms  # noqa: F401
    from gateway.speakers import models as _speakers  # noqa: F401
    from gateway.templates import models as _templates  # noqa: F401
    from gateway.users import models as _users  # noqa: F401

    return Base.metadata


DialectInsert = Callable[[Any], postgresql.Insert] | Callable[[Any], sqlite.Insert]


def dialect_insert(session: AsyncSession) -> DialectInsert:
    """The session's database's own INSERT, the one with ``on_conflict_do_update`` and
    ``on_conflict_do_nothing`` (PostgreSQL's or SQLite's): an upsert in one statement."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
