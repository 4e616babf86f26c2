"""The gateway's hold on the broker's users: dynamic security commands over an admin account.

Passwords exist in plain text only at the moment they are issued, so `put` pushes a new one to
the broker then and there, before the database commits it: when the broker does not take it,
the caller gets an error and the old password stays the one that works (never a new password
the broker does not know). Everything else the database decides (who may connect at all, which
client id each speaker is bound to, which topics it may use) is `reconcile`d: at every connect,
every `RECONCILE_EVERY_S`, and promptly after a change (`poke`). Users the broker has and the
database has not are deleted there, so a revocation whose push failed still takes effect.

Exceptions::

    BrokerAdminError    the broker did not answer, or refused a command (message says which)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import ssl
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Final

import aiomqtt
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.devicesec import dynsec
from gateway.devicesec.dynsec import BrokerClient, BrokerState
from gateway.settings import MqttTarget

if TYPE_CHECKING:
    from gateway.deps import AppState

log = logging.getLogger(__name__)

RECONCILE_EVERY_S: Final = 30.0
ANSWER_TIMEOUT_S: Final = 10.0
# How long a push waits for the admin connection to come (back) up.
CONNECT_WAIT_S: Final = 3.0
# Answers the broker gives to commands that found the state they were to make.
_ALREADY: Final = ("already exists", "not found")


class BrokerAdminError(Exception):
    """The broker did not answer a dynamic security command, or refused one. `maybe_applied`:
    the change may have reached the broker (it went out and no answer came back, or part of it
    was taken and could not be undone); False means the broker's users are as they were."""

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


class BrokerUserReserved(Exception):
    """The broker holds this user and it is not the gateway's to change: its own admin account,
    or one made on the broker by hand."""

    def __init__(self, username: str) -> None:
        super().__init__(f"the broker user {username!r} is not the gateway's to change")
        self.username = username


class BrokerAdmin:
    """One admin connection per replica; run `run` for the app's lifetime."""

    def __init__(
        self,
        target: MqttTarget,
        *,
        username: str,
        password: str,
        client_id: str,
        load_state: Callable[[], Awaitable[BrokerState]],
        every_s: float = RECONCILE_EVERY_S,
    ) -> None:
        self._target = target
        self._username = username
        self._password = password
        self._client_id = client_id
        self._load_state = load_state
        self._every_s = every_s
        self._client: aiomqtt.Client | None = None
        self._ready = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}
        self._poked = asyncio.Event()
        self._lock = asyncio.Lock()
        self.reconciled = 0
        self.missing: list[str] = []

    @property
    def username(self) -> str:
        return self._username

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def poke(self) -> None:
        """Reconcile soon: the database changed who may connect or what they may do."""
        self._poked.set()

    async def run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with aiomqtt.Client(
                    self._target.host,
                    self._target.port,
                    username=self._username,
                    password=self._password,
                    identifier=self._client_id,
                    protocol=aiomqtt.ProtocolVersion.V5,
                    keepalive=30,
                    tls_context=ssl.create_default_context() if self._target.tls else None,
                    timeout=10,
                ) as client:
                    await client.subscribe(dynsec.RESPONSE_TOPIC, qos=1)
                    self._client = client
                    self._ready.set()
                    backoff = 0.5
                    self._poked.set()
                    async with asyncio.TaskGroup() as group:
                        group.create_task(self._keep_reconciling())
                        async for message in client.messages:
                            self._answer(message.payload)
            except* aiomqtt.MqttError as group_error:
                log.warning(
                    "브로커 관리 연결 끊김 / broker admin connection lost (%s); retrying",
                    group_error.exceptions[0],
                )
            finally:
                self._ready.clear()
                self._client = None
                for future in self._waiting.values():
                    if not future.done():
                        future.set_exception(
                            BrokerAdminError("the admin connection dropped", maybe_applied=True)
                        )
                self._waiting.clear()
            await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
            backoff = min(backoff * 2, 30.0)

    async def _keep_reconciling(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every_s):
                    await self._poked.wait()
            self._poked.clear()
            try:
                await self.reconcile()
            except BrokerAdminError as exc:
                log.error("브로커 사용자 맞추기 실패 / broker reconcile failed: %s", exc)
            except aiomqtt.MqttError:
                raise
            except Exception:  # the database is away: next time
                log.exception("브로커 사용자 맞추기 실패 / broker reconcile failed")

    def _answer(self, payload: Any) -> None:
        try:
            responses = json.loads(bytes(payload))["responses"]
            key = responses[0].get("correlationData")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return
        future = self._waiting.pop(key, None) if isinstance(key, str) else None
        if future is not None and not future.done():
            future.set_result(responses)

    async def _connected_client(self) -> aiomqtt.Client:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_WAIT_S):
                await self._ready.wait()
        client = self._client
        if client is None:
            raise BrokerAdminError("no admin connection to the broker")
        return client

    async def send(
        self, commands: list[dict[str, Any]], *, tolerate: Collection[int] = ()
    ) -> list[dict[str, Any]]:
        """Send commands in one message and return the broker's answers, in order. An answer
        with an error raises, unless its index is in `tolerate` (or, for any command, the error
        says the state it was to make is there already)."""
        if not commands:
            return []
        client = await self._connected_client()
        key = secrets.token_hex(8)
        first = {**commands[0], "correlationData": key}
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            payload = json.dumps({"commands": [first, *commands[1:]]})
            await client.publish(dynsec.CONTROL_TOPIC, payload, qos=1, timeout=ANSWER_TIMEOUT_S)
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                responses = await future
        except (TimeoutError, aiomqtt.MqttError) as exc:
            raise BrokerAdminError(
                f"the broker did not answer: {exc or 'timed out'}", maybe_applied=True
            ) from exc
        finally:
            self._waiting.pop(key, None)
            if future.done() and not future.cancelled():
                # A drop while publishing fails the publish above, and the future too: the
                # error is the publish's, so the future's is taken here and not left unread.
                future.exception()
        taken = any(not answer.get("error") for answer in responses)
        for index, answer in enumerate(responses):
            error = answer.get("error")
            if not error or index in tolerate:
                continue
            lowered = str(error).lower()
            kind = commands[index]["command"] if index < len(commands) else "?"
            # Another replica reconciling at the same moment got there first.
            idempotent = kind.startswith(("create", "delete", "addRole", "removeRole"))
            if idempotent and any(w in lowered for w in _ALREADY):
                continue
            raise BrokerAdminError(f"{kind} refused: {error}", maybe_applied=taken)
        return responses

    async def put(self, client: BrokerClient, password: str, acls: Mapping[str, Any]) -> None:
        """Create `client` with `password` (or give it that password), with its roles, which
        are made to hold `acls` (role name -> ACLs) first. The broker disconnects a client whose
        password changed.

        One command per message, each only once the one before it was taken, so a refusal
        leaves the user as it was: a binding changed before a refused password is put back.
        Raises `BrokerUserReserved`, before changing anything, for the gateway's admin account
        and for users the broker holds that are not the gateway's."""
        async with self._lock:
            commands: list[dict[str, Any]] = []
            for name, wanted in acls.items():
                answer = await self.send([{"command": "getRole", "rolename": name}], tolerate=[0])
                role = answer[0].get("data", {}).get("role") if answer else None
                have = dynsec.parse_roles({"roles": [role]})[name] if role else None
                commands += dynsec.role_commands(name, wanted, have)
            try:
                # Roles made to hold what the database says: no change to who may connect.
                await self.send(commands)
            except BrokerAdminError as exc:
                raise BrokerAdminError(str(exc)) from exc
            before = await self._client_named(client.username)
            if client.username == self._username or (
                before is not None and not dynsec.changeable(before)
            ):
                raise BrokerUserReserved(client.username)
            create, set_password, modify = dynsec.put_client(client, password)
            if before is None:
                answer = await self.send([create], tolerate=[0])
                error = str(answer[0].get("error") or "") if answer else ""
                if not error:
                    return
                before = await self._client_named(client.username)
                if before is None or not dynsec.changeable(before):
                    raise BrokerAdminError(f"createClient refused: {error}")
            await self.send([modify])
            try:
                await self.send([set_password])
            except BrokerAdminError as exc:
                if exc.maybe_applied:
                    raise
                try:
                    await self.send([dynsec.modify_client(before)])
                except BrokerAdminError as undo:
                    raise BrokerAdminError(
                        f"{exc}; its binding could not be put back: {undo}", maybe_applied=True
                    ) from exc
                raise

    async def _client_named(self, username: str) -> BrokerClient | None:
        answer = await self.send([{"command": "getClient", "username": username}], tolerate=[0])
        found = answer[0].get("data", {}).get("client") if answer else None
        if not found:
            if answer and "not found" not in str(answer[0].get("error", "")).lower():
                raise BrokerAdminError(f"getClient refused: {answer[0].get('error')}")
            return None
        return dynsec.parse_clients({"clients": [found]})[username]

    async def reconcile(self) -> list[str]:
        """Make the broker's users and roles what the database says; returns the users the
        broker lacks (their password is only in the database as a hash: they connect again
        once issued a new one, or once the broker restarts from the rendered file)."""
        async with self._lock:
            want = await self._load_state()
            answers = await self.send(
                [
                    {"command": "listClients", "verbose": True},
                    {"command": "listRoles", "verbose": True},
                ]
            )
            clients = dynsec.parse_clients(answers[0].get("data", {}))
            roles = dynsec.parse_roles(answers[1].get("data", {}))
            commands, missing = dynsec.reconcile_commands(
                want, clients, roles, keep=[self._username]
            )
            # The broker applies the commands of one message in turn; big fleets in slices.
            for start in range(0, len(commands), 500):
                await self.send(commands[start : start + 500])
            if commands:
                log.warning(
                    "브로커 사용자 %d건을 데이터베이스에 맞췄습니다 / broker: %d changes to match "
                    "the database",
                    len(commands),
                    len(commands),
                )
            if missing and missing != self.missing:
                log.warning(
                    "브로커에 없는 사용자 %d명: 새 비밀번호를 발급하세요 / %d users the broker "
                    "lacks (issue new credentials): %s",
                    len(missing),
                    len(missing),
                    ", ".join(missing[:20]),
                )
            self.missing = missing
            self.reconciled += 1
            return missing


def admin_of(state: AppState) -> BrokerAdmin | None:
    """The app's broker admin (`app.state`), None when the gateway does not manage the broker."""
    admin = getattr(state, "broker_admin", None)
    return admin if isinstance(admin, BrokerAdmin) else None


async def after_change(state: AppState, session: AsyncSession) -> None:
    """Commit a change to who may connect or where a speaker is, then have the broker follow
    it now rather than at the next periodic reconcile."""
    admin = admin_of(state)
    if admin is not None:
        await session.commit()
        admin.poke()
