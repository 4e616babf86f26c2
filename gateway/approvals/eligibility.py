"""Who may be the second person: another person, signed in, whose account and rights predate the
request and owe nothing to the person who asked.

A city administrator can make accounts; without this, one administrator could ask, make a
safety officer (or reset one's password, or widen one's area), sign in as it and approve.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.approvals.models import ApprovalRequest
from gateway.auth import Principal
from gateway.errors import Conflict, Forbidden
from gateway.users import standing as accounts


def _not_eligible(ko: str, en: str) -> Forbidden:
    return Forbidden("approver_not_eligible", ko=ko, en=en)


async def check_approver(
    session: AsyncSession, approval: ApprovalRequest, principal: Principal
) -> None:
    """Raise unless ``principal`` may be the second person for ``approval`` (their rights to the
    category and the area are checked by ``scopes.authorize_act`` beside this)."""
    if principal.user_id is None:
        raise Forbidden(
            "bootstrap_cannot_approve",
            ko="부트스트랩 토큰으로는 승인할 수 없습니다. 승인할 담당자가 본인 계정으로 로그인해 "
            "주세요.",
            en="The bootstrap token never approves: the second person signs in with their own "
            "account.",
        )
    if principal.via == "api_key":
        raise _not_eligible(
            ko="API 키로는 승인할 수 없습니다. 승인할 담당자가 본인 계정으로 로그인해 주세요.",
            en="An API key cannot approve: the second person signs in with their own account.",
        )
    if await accounts.account_state(session, approval.requested_by) in ("suspended", "removed"):
        # Suspension withdraws a person's pending requests; this covers one that raced it.
        raise Conflict(
            "requester_suspended",
            ko="요청한 사람의 계정이 정지되었거나 없어져 이 재난 방송은 승인할 수 없습니다.",
            en="The person who asked for this broadcast is suspended or gone: it cannot be "
            "approved.",
        )
    standing = await accounts.standing(session, principal.user_id)
    requester = approval.requested_user_id
    if requester is not None and requester in standing.empowered_by:
        raise _not_eligible(
            ko="요청자가 만들거나 비밀번호를 정하거나 권한을 준 계정은 승인할 수 없습니다. "
            "다른 담당자의 승인이 필요합니다.",
            en="The requester (or an account they made or empowered) created this account, set "
            "its password, gave it its rights or re-enabled it: it cannot approve their request.",
        )
    if standing.rights_since > approval.created_at:
        raise _not_eligible(
            ko="승인 요청 뒤에 만들어지거나 권한을 받은 계정은 이 요청을 승인할 수 없습니다.",
            en="This account was created, given its rights or re-enabled after the request: it "
            "cannot approve it.",
        )
