"""Writes an audit row for every change made through the API, and for reads of personal data.

Runs after the response, in a transaction of its own, so a refused or failed request is
recorded too (with its outcome). Logins and logouts are recorded by the users service, which
knows whose account it is.

A request without a valid credential is recorded as ``anonymous`` with words the gateway
chooses only (the route and the outcome: no reason, no target) and within the budget of its
source (`gateway.audit.budget`), so nobody can fill the log with rows of their own making.
"""

from __future__ import annotations

import logging
from typing import Any, Final
from urllib.parse import unquote

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.audit import service as audit
from gateway.audit.budget import AnonymousBudget
from gateway.clock import Clock
from gateway.deps import state_of
from gateway.forwarding import client_address

log = logging.getLogger(__name__)

# Reads worth a record: who looked at people, keys, recordings and the logs themselves.
SENSITIVE_READS: Final = frozenset(
    {
        "list_users",
        "get_user",
        "list_api_keys",
        "list_audit_events",
        "verify_audit_log",
        "list_security_events",
        "get_audio",
        "get_approval_audio",
        "list_account_events",
        "list_residents",
        "get_resident",
        "list_households",
    }
)
_SELF_RECORDED: Final = frozenset({"login", "refresh_token", "logout"})
ANONYMOUS: Final = "anonymous"


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "denied"
    if status == 429:
        return "limited"
    return "failed" if status >= 500 else "rejected"


def _operation(request: Request) -> str | None:
    route = request.scope.get("route")
    operation = getattr(route, "operation_id", None)
    return str(operation) if operation else None


async def record_request(request: Request, status: int) -> None:
    operation = _operation(request)
    if operation is None or operation in _SELF_RECORDED:
        return
    if request.method in ("GET", "HEAD", "OPTIONS") and operation not in SENSITIVE_READS:
        return
    principal = getattr(request.state, "principal", None)
    if operation == "get_audio" and principal is None:
        return  # a speaker fetching its audio by hash: the delivery records it
    state = state_of(request)
    sessions: async_sessionmaker[AsyncSession] = state.sessions
    clock: Clock = state.clock
    now = clock.now()
    # The client, not the proxy in front: see gateway/forwarding.py.
    source = client_address(request, state.settings.trusted_networks)
    if principal is None:
        budget: AnonymousBudget = state.audit_budget
        if not budget.admit(source, now):
            return
        target = reason = None
    else:
        # What the path names, plus what a route names from its body (the account or code
        # it created: never a secret).
        params: dict[str, Any] = {
            **dict(request.path_params),
            **getattr(request.state, "audit_target", {}),
        }
        target = ",".join(f"{k}={v}" for k, v in sorted(params.items())) or None
        # A route's own reason (a key's revocation), or the caller's header: percent-encoded
        # UTF-8, so a reason can be written in Korean.
        reason = (
            getattr(request.state, "audit_reason", None)
            or unquote(request.headers.get("x-access-reason", ""))
            or None
        )
    try:
        async with sessions() as session:
            await audit.append(
                session,
                at=now,
                city_id=getattr(state, "city_id", None),
                actor=principal.actor if principal is not None else ANONYMOUS,
                role=principal.role.value if principal is not None else None,
                action=operation,
                target=target,
                outcome=outcome_of(status),
                reason=reason,
                source=source,
                details={"status": status, "via": getattr(principal, "via", None)},
            )
            await session.commit()
    except Exception:
        # The action has happened; an audit row that could not be written is logged loudly.
        log.exception("감사 기록 실패 / could not write the audit row for %s", operation)
