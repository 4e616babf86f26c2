"""The consent text residents agree to when they sign up (개인정보 보호법 제15조 제2항: purpose,
items, how long, and the right to refuse), with its version: a sign-up names the version shown.

A new wording is a new version; sign-ups that name an older one are refused (422
``outdated_consent``), so every resident's row says which text they agreed to.
"""

from __future__ import annotations

from typing import Final

from gateway.residents.schemas import ConsentSection, ConsentText

CONSENT_VERSION: Final = "2026-12-v1"


def _section(heading: str, text: str) -> ConsentSection:
    return ConsentSection(heading=heading, text=text)


def consent_text(retention_days: int) -> ConsentText:
    years, days = divmod(retention_days, 365)
    period = f"{years}년" if not days else f"{retention_days}일"
    return ConsentText(
        version=CONSENT_VERSION,
        title="마을 방송 문자·알림 수신을 위한 개인정보 수집·이용 동의",
        sections=[
            _section(
                "수집·이용 목적",
                "마을 방송(재난 안내 포함)을 스피커로 듣지 못할 때 문자(SMS), 웹 알림 또는 "
                "가정용 수신기로 알려 드리기 위해서만 이용합니다. 다른 목적으로 이용하거나 "
                "제3자에게 제공하지 않습니다.",
            ),
            _section(
                "수집 항목",
                "휴대전화 번호, 사는 마을, 받으실 방법(문자·웹 알림·가정용 수신기), 안내 언어.",
            ),
            _section(
                "보유·이용 기간",
                f"동의한 날부터 {period}. 기간 안에 다시 동의하시면 연장됩니다. 기간이 끝나거나 "
                "동의를 철회하시면 전화번호와 개인 항목을 지체 없이 파기합니다.",
            ),
            _section(
                "보관 방법",
                "전화번호는 암호화하여 보관하고, 화면에는 가운데 네 자리를 가려 보여 줍니다. "
                "담당 공무원이 전체 번호를 보려면 사유를 남겨야 하며 모두 기록됩니다.",
            ),
            _section(
                "동의를 거부할 권리",
                "동의하지 않으셔도 됩니다. 동의하지 않으시면 문자·알림을 받으실 수 없을 뿐, "
                "마을 방송 다시 듣기 등 다른 서비스는 그대로 이용하실 수 있습니다. 동의는 "
                "언제든지 이 페이지(인증번호 확인)나 읍·면·동 주민센터에서 철회하실 수 있으며, "
                "철회하시면 바로 파기합니다.",
            ),
        ],
    )
