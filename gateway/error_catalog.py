"""Every stable error code the HTTP API answers with: its status and what it means (one entry per
code, so the file is as long as the list: that is its reason to pass 600 lines).

Raise sites keep their own messages, which name the specifics (which id, which limit); this
table holds the general meaning a caller programs against. The README's error table and the
routes' documented responses are generated from it, and a test holds the code to it: every
code raised is here with the status it is raised with, and every code here is raised.

    python -m gateway.error_catalog     # the README's table, as markdown
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final


@dataclass(frozen=True)
class ErrorCode:
    status: int
    ko: str
    en: str


def _e(status: int, ko: str, en: str) -> ErrorCode:
    return ErrorCode(status, ko, en)


CATALOG: Final[Mapping[str, ErrorCode]] = {
    # 401: who is asking is not known.
    "not_authenticated": _e(
        401,
        "로그인하거나 토큰을 보내야 합니다.",
        "No credentials: log in, or send `Authorization: Bearer <token>`.",
    ),
    "invalid_token": _e(
        401,
        "토큰이 올바르지 않거나 만료되었습니다. 다시 로그인하세요.",
        "The token is invalid or expired; log in again.",
    ),
    "invalid_credentials": _e(
        401,
        "아이디 또는 비밀번호가 틀렸습니다.",
        "Wrong user name or password (or speaker id and broker password).",
    ),
    "invalid_ticket": _e(
        401,
        "실시간 방송 티켓이 없거나 이미 쓰였거나 만료되었습니다.",
        "The live ticket is unknown, used or expired; ask for a new one.",
    ),
    "invalid_enrollment_code": _e(
        401,
        "설치 코드가 맞지 않습니다. 관리 화면에서 받은 코드를 확인하세요.",
        "No speaker has this enrollment code; check the code the console showed.",
    ),
    "broker_hook_secret_missing": _e(
        401,
        "브로커 훅 비밀값 헤더가 없습니다.",
        "A broker hook call without its secret header.",
    ),
    # 403: known, but not allowed.
    "cap_sender_not_allowed": _e(
        403,
        "이 계정은 이 CAP 보낸곳(<sender>)의 경보를 보낼 수 없습니다 (허용 목록에 없거나 꺼짐).",
        "The CAP <sender> is not on the allow-list for this account, or is disabled.",
    ),
    "cap_reference_sender_not_allowed": _e(
        403,
        "다른 보낸곳의 경보는 바꾸거나 취소할 수 없습니다.",
        "An Update or Cancel references an alert of a CAP sender this account may not post for.",
    ),
    "role_not_allowed": _e(
        403,
        "이 역할로는 할 수 없는 일입니다.",
        "The caller's role may not do this.",
    ),
    "category_not_allowed": _e(
        403,
        "이 역할로는 보낼 수 없는 방송 종류입니다.",
        "The caller's role may not send broadcasts of this category.",
    ),
    "outside_scope": _e(
        403,
        "담당 지역 밖입니다.",
        "The target lies outside the caller's districts or villages.",
    ),
    "account_suspended": _e(
        403,
        "정지된 계정입니다. 시 관리자에게 문의하세요.",
        "The account is suspended; contact the city administrator.",
    ),
    "live_needs_approval": _e(
        403,
        "승인이 필요한 재난 방송은 실시간으로 할 수 없습니다. 녹음을 보내 승인을 받으세요.",
        "A disaster alert that needs a second person's approval cannot go live; send a "
        "recording instead.",
    ),
    "bootstrap_cannot_approve": _e(
        403,
        "초기 토큰으로는 승인할 수 없습니다. 본인 계정으로 로그인하세요.",
        "The bootstrap token never approves; the approver signs in with their own account.",
    ),
    "approver_not_eligible": _e(
        403,
        "이 요청을 승인할 권한이 없습니다.",
        "The caller may not approve this request (role, area or category).",
    ),
    "cancel_outranked": _e(
        403,
        "담당 지역이 더 넓은 사람이 보낸 방송은 취소하거나 바꿀 수 없습니다.",
        "Sent by someone with a wider area; only they, or someone over that area, may change it.",
    ),
    "template_outside_rights": _e(
        403,
        "이 문구 틀을 바꿀 권한이 없습니다.",
        "The caller may not send this template's category everywhere it is kept.",
    ),
    "audio_link_required": _e(
        403,
        "서명된 링크로 받거나 로그인해야 하는 오디오입니다.",
        "This audio is served only through a signed link, or after logging in.",
    ),
    "audio_link_invalid": _e(
        403,
        "오디오 링크의 서명이 올바르지 않습니다.",
        "The audio link's signature does not verify.",
    ),
    "audio_link_expired": _e(
        403,
        "오디오 링크가 만료되었습니다.",
        "The audio link has expired; ask for a new one.",
    ),
    "broker_hook_secret_wrong": _e(
        403,
        "브로커 훅 비밀값이 틀렸습니다.",
        "A broker hook call with the wrong secret.",
    ),
    "origin_not_allowed": _e(
        403,
        "다른 출처의 페이지에서 연 실시간 방송 연결입니다.",
        "The live WebSocket was opened from a page of another origin (closed with 1008 "
        "before its handshake).",
    ),
    "sms_report_forged": _e(
        403,
        "서명이 맞지 않는 수신 결과 알림입니다.",
        "A delivery report whose link signature does not match: not from this gateway's Kannel.",
    ),
    # 404: no such thing (in this city, for this caller).
    "cap_sender_not_found": _e(404, "CAP 보낸곳을 찾을 수 없습니다.", "No such CAP sender."),
    "not_found": _e(404, "없는 주소입니다.", "No such route or page asset."),
    "city_not_found": _e(404, "없는 시입니다.", "No such city."),
    "district_not_found": _e(404, "없는 읍·면입니다.", "No such district."),
    "village_not_found": _e(404, "없는 마을입니다.", "No such village."),
    "push_not_enabled": _e(
        404,
        "이 게이트웨이는 웹 푸시 알림을 보내지 않습니다.",
        "This gateway does not send web push (no `GATEWAY_PUSH_VAPID_SUBJECT`).",
    ),
    "speaker_not_found": _e(404, "없는 스피커입니다.", "No such speaker."),
    "broadcast_not_found": _e(404, "없는 방송입니다.", "No such broadcast."),
    "cap_alert_not_found": _e(
        404,
        "공개된 CAP 경보가 없습니다.",
        "No public CAP alert has this identifier (only live broadcasts are published).",
    ),
    "audio_not_found": _e(
        404, "요청한 형식의 오디오가 없습니다.", "No audio in the requested encoding."
    ),
    "schedule_not_found": _e(404, "없는 예약입니다.", "No such schedule."),
    "template_not_found": _e(404, "없는 문구 틀입니다.", "No such template."),
    "user_not_found": _e(404, "없는 사용자입니다.", "No such user."),
    "api_key_not_found": _e(404, "없는 API 키입니다.", "No such API key."),
    "approval_not_found": _e(404, "없는 승인 요청입니다.", "No such approval request."),
    "account_not_found": _e(404, "없는 브로커 계정입니다.", "No such broker account."),
    "officer_alert_not_found": _e(404, "없는 알림입니다.", "No such alert for the caller."),
    "signing_key_not_found": _e(404, "없는 서명 키입니다.", "No such signing key."),
    "live_not_found": _e(
        404, "이어서 할 실시간 방송이 없습니다.", "No live session of the caller's to resume."
    ),
    "method_not_allowed": _e(
        405, "이 주소에서 허용되지 않는 요청 방식입니다.", "The route does not take this method."
    ),
    "sms_not_found": _e(404, "없는 문자입니다.", "No such SMS."),
    # 409: the request is fine, the state of things refuses it.
    "cap_sender_exists": _e(
        409,
        "이 CAP 보낸곳은 이미 허용 목록에 있습니다. 바꾸려면 PATCH 하세요.",
        "The CAP sender is on the allow-list already; PATCH it to change it.",
    ),
    "write_conflict": _e(
        409,
        "같은 때에 들어온 다른 요청과 충돌했습니다. 다시 시도해 주세요.",
        "The request conflicted with another made at the same moment (a constraint the "
        "gateway did not expect to meet, logged); try again.",
    ),
    "duplicate_code": _e(409, "같은 코드가 이미 있습니다.", "That code is already in use."),
    "duplicate_template": _e(
        409, "같은 이름의 문구 틀이 이미 있습니다.", "A template of that name already exists."
    ),
    "username_taken": _e(409, "이미 쓰이는 이름입니다.", "That user name is already taken."),
    "district_not_empty": _e(
        409,
        "마을이 남아 있는 읍·면은 지울 수 없습니다.",
        "The district still has villages; move or delete them first.",
    ),
    "village_not_empty": _e(
        409,
        "스피커가 남아 있는 마을은 지울 수 없습니다.",
        "The village still has speakers; move or delete them first.",
    ),
    "quiet_hours": _e(
        409,
        "방송 금지 시간입니다. 재난 방송만 보낼 수 있습니다.",
        "Within quiet hours only disaster alerts are sent; try after they end.",
    ),
    "approval_required": _e(
        409,
        "두 번째 사람의 승인이 필요한 재난 방송이라 이 방식으로는 보낼 수 없습니다.",
        "A disaster alert that needs a second person's approval, which this cannot wait for.",
    ),
    "broadcast_finished": _e(409, "이미 끝난 방송입니다.", "The broadcast has already finished."),
    "broadcast_cancelled": _e(
        409, "취소된 방송은 다시 보낼 수 없습니다.", "A cancelled broadcast cannot be resent."
    ),
    "already_all_clear": _e(
        409, "이미 해제 방송을 보낸 경보입니다.", "This alert has already been cleared."
    ),
    "not_clearable": _e(
        409,
        "실제 방송으로 나가고 취소되지 않은 경보만 해제할 수 있습니다.",
        "Only a live broadcast that was not cancelled (and is no all clear itself) can be cleared.",
    ),
    "nothing_to_resend": _e(
        409,
        "다시 보낼 스피커가 없습니다.",
        "Every targeted speaker played it or is still in progress.",
    ),
    "live_busy": _e(
        409,
        "같은 우선순위의 실시간 방송이 이미 진행 중입니다.",
        "A live broadcast of the same priority is on air in one of these villages.",
    ),
    "live_attached": _e(
        409,
        "다른 연결에서 진행 중인 실시간 방송입니다.",
        "The live session is being spoken from another connection.",
    ),
    "schedule_already_fired": _e(
        409,
        "이미 방송된 예약입니다. 취소하고 새로 만드세요.",
        "The schedule has already fired; cancel it and make a new one.",
    ),
    "schedule_cancelled": _e(409, "취소된 예약입니다.", "The schedule was cancelled."),
    "schedule_paused": _e(
        409,
        "멈춘 예약입니다. 재개하거나 취소하세요.",
        "The schedule is paused; resume or cancel it first.",
    ),
    "schedule_not_paused": _e(409, "멈춘 예약이 아닙니다.", "The schedule is not paused."),
    "schedule_busy": _e(
        409,
        "예약이 방금 바뀌었거나 방송되었습니다. 다시 읽고 시도하세요.",
        "The schedule changed or fired at the same moment; read it again and retry.",
    ),
    "owner_suspended": _e(
        409,
        "예약을 만든 사람의 계정이 정지되었거나 없어 재개할 수 없습니다.",
        "The schedule's creator is suspended or gone, so it cannot be resumed.",
    ),
    "own_approval": _e(
        409,
        "자신이 보낸 방송은 승인할 수 없습니다.",
        "A person cannot approve their own disaster broadcast.",
    ),
    "approval_alert_expired": _e(
        409,
        "요청의 CAP 경보가 이미 만료되었습니다.",
        "The CAP alert the request carries has expired; it is not broadcast.",
    ),
    "cap_alert_changed": _e(
        409,
        "같은 경보(보낸곳·식별자·보낸시각)를 다른 내용으로 다시 보냈습니다.",
        "The same alert (sender, identifier, sent) was taken in before with other content.",
    ),
    "cap_reference_mode_mismatch": _e(
        409,
        "시험·훈련 메시지는 실제 경보를 바꾸거나 취소할 수 없습니다 (같은 모드의 경보만).",
        "An Update or Cancel acts only on alerts of its own mode: a test or exercise never "
        "touches a live alert.",
    ),
    "approval_not_pending": _e(
        409, "이미 처리된 승인 요청입니다.", "The approval request is no longer pending."
    ),
    "approval_audio_changed": _e(
        409,
        "들은 오디오와 방송될 오디오가 다릅니다. 다시 듣고 승인하세요.",
        "The audio heard is not the audio that would play; listen again before approving.",
    ),
    "requester_suspended": _e(
        409,
        "요청한 사람의 계정이 정지되었거나 없어 승인할 수 없습니다.",
        "The requester is suspended or gone; the request cannot be approved.",
    ),
    "cannot_suspend_self": _e(
        409, "자신의 계정은 정지할 수 없습니다.", "A person cannot suspend their own account."
    ),
    "signing_key_revoked": _e(
        409, "이미 폐기된 서명 키입니다.", "The signing key is already revoked."
    ),
    "revocation_strands_speakers": _e(
        409,
        "이 키를 폐기하면 이 키만 믿는 스피커가 새 키를 받을 수 없습니다.",
        "No older trusted key endorses this one; revoking it would strand the speakers that "
        "trust only it.",
    ),
    "sms_report_not_applicable": _e(
        409,
        "이미 끝난 문자에는 이 수신 결과를 적용할 수 없습니다.",
        "The delivery report contradicts the SMS's final state (delivered after failed).",
    ),
    # 410: it was there, and is no more.
    "enrollment_code_used": _e(
        410,
        "이미 사용한 설치 코드입니다. 새 코드를 발급받으세요.",
        "The enrollment code was already redeemed; issue a new one.",
    ),
    "enrollment_code_expired": _e(
        410,
        "설치 코드의 유효 기간이 지났습니다. 새 코드를 발급받으세요.",
        "The enrollment code has expired; issue a new one.",
    ),
    "audio_too_large": _e(413, "오디오 파일이 너무 큽니다.", "The audio file is too large."),
    "csv_too_large": _e(413, "CSV 파일이 너무 큽니다.", "The CSV file is too large."),
    "range_not_satisfiable": _e(
        416,
        "요청한 범위가 오디오 밖입니다.",
        "The byte range lies outside the audio (`Content-Range: bytes */SIZE`).",
    ),
    # 422: the request itself is wrong; sending it again will not help.
    "cap_too_large": _e(
        422, "CAP 문서가 너무 큽니다 (최대 512 KiB).", "The CAP document is over 512 KiB."
    ),
    "cap_not_xml": _e(422, "XML 문서가 아닙니다.", "The body is not an XML document."),
    "cap_dtd_forbidden": _e(
        422,
        "DOCTYPE과 엔티티 선언(외부 엔티티 포함)은 받지 않습니다.",
        "A DOCTYPE or entity declaration (external entities included) is not allowed.",
    ),
    "cap_wrong_namespace": _e(
        422,
        "CAP 1.2 문서가 아닙니다 (CAP 1.1 등 다른 네임스페이스).",
        "Not a CAP 1.2 document (another namespace, e.g. CAP 1.1).",
    ),
    "cap_schema_invalid": _e(
        422,
        "CAP 1.2 스키마에 맞지 않습니다. path가 문제의 위치입니다.",
        "The document does not follow the CAP 1.2 schema; `path` says where.",
    ),
    "cap_field_too_long": _e(
        422,
        "CAP 식별자(identifier)나 보낸곳(sender)이 너무 깁니다 (최대 200자).",
        "The CAP identifier or sender is over 200 characters.",
    ),
    "cap_status_not_broadcast": _e(
        422,
        "상태가 System, Draft인 경보는 방송하지 않습니다.",
        "An alert whose status is System or Draft is not broadcast.",
    ),
    "cap_msg_type_not_broadcast": _e(
        422,
        "Ack, Error 메시지는 방송하지 않습니다.",
        "An Ack or Error message is not broadcast.",
    ),
    "cap_reference_invalid": _e(
        422,
        "references 값은 '보낸곳,식별자,보낸시각' 형식이어야 합니다.",
        "A reference is 'sender,identifier,sent'.",
    ),
    "cap_reference_unknown": _e(
        422,
        "Update/Cancel이 가리키는 경보를 받은 적이 없습니다.",
        "The Update or Cancel references no alert this gateway took in.",
    ),
    "cap_no_info": _e(422, "방송할 내용(<info>)이 없습니다.", "The alert has no <info>."),
    "cap_time_invalid": _e(
        422,
        "시각을 읽을 수 없습니다 (날짜와 시간대를 확인하세요).",
        "A time in the alert cannot be placed (check its date and offset).",
    ),
    "cap_no_korean_info": _e(
        422,
        "한국어 <info>가 없습니다. language가 ko-KR인 <info>를 넣어 보내 주세요.",
        "The alert has no Korean <info>; send one with language ko-KR.",
    ),
    "cap_scope_not_public": _e(
        422,
        "공개(Public) 경보만 방송합니다. 옥외 스피커는 누구나 듣습니다.",
        "Only Public alerts are broadcast: the speakers are public, anyone hears them.",
    ),
    "cap_text_too_long": _e(
        422,
        "방송할 경보 문장이 너무 깁니다.",
        "The alert's spoken text (headline, description, instruction) is over the limit.",
    ),
    "cap_info_areas_differ": _e(
        422,
        "<info>마다 지역이 다른 경보는 받지 않습니다.",
        "The alert's <info> blocks name different areas.",
    ),
    "cap_sent_in_future": _e(
        422,
        "보낸 시각(<sent>)이 너무 먼 미래입니다.",
        "The alert's <sent> is too far in the future.",
    ),
    "cap_expired": _e(422, "이미 만료된 경보입니다.", "The alert has expired."),
    "cap_area_missing": _e(422, "경보에 지역(<area>)이 없습니다.", "The alert has no <area>."),
    "cap_area_unplaceable": _e(
        422,
        "지역에 다각형, 원, 또는 알려진 한국 행정 코드가 없습니다.",
        "An area has no polygon, circle or known Korean geocode.",
    ),
    "cap_area_empty": _e(
        422, "경보 지역 안에 이 도시의 마을이 없습니다.", "The alert's areas cover no village."
    ),
    "cap_sender_account_cannot_send": _e(
        422,
        "방송을 보낼 수 없는 역할(감사자)의 계정은 CAP 보낸곳이 될 수 없습니다.",
        "An account whose role sends nothing (an auditor) cannot be a CAP sender.",
    ),
    "invalid_request": _e(
        422,
        "요청 형식이 올바르지 않습니다.",
        "The request does not match its schema; `fields` names each problem.",
    ),
    "value_out_of_range": _e(
        422,
        "요청의 숫자가 허용 범위를 벗어났습니다.",
        "A number in the request is out of range.",
    ),
    "unknown_category": _e(422, "알 수 없는 방송 종류입니다.", "Unknown broadcast category."),
    "missing_file": _e(
        422, "녹음 파일이나 읽을 문구가 필요합니다.", "A recording or a text to speak is required."
    ),
    "area_and_target": _e(
        422,
        "지역(area)과 전체·읍·면·동·마을 대상은 함께 줄 수 없습니다.",
        "An area replaces the other targets: give one or the other.",
    ),
    "invalid_area": _e(
        422,
        "지역은 circle, polygon, codes 중 하나여야 합니다.",
        "An area is exactly one of circle, polygon or codes (1-500 codes).",
    ),
    "invalid_area_code": _e(
        422, "행정 코드는 숫자 10자리여야 합니다.", "Administrative codes are 10 digits."
    ),
    "invalid_coordinates": _e(
        422,
        "위도는 -90~90, 경도는 -180~180이어야 합니다.",
        "Latitude must be -90..90 and longitude -180..180.",
    ),
    "invalid_radius": _e(
        422,
        "반경은 0보다 크고 100,000m 이하여야 합니다.",
        "The circle's radius must be more than 0 and at most 100000 m.",
    ),
    "invalid_polygon": _e(
        422,
        "다각형은 서로 다른 점 3개 이상이고 변이 교차하지 않아야 합니다.",
        "A polygon needs 3-2000 distinct points and must not cross itself.",
    ),
    "invalid_boundary": _e(
        422,
        "경계는 변이 교차하지 않는 GeoJSON Polygon 또는 MultiPolygon이어야 합니다.",
        "A boundary is a GeoJSON Polygon or MultiPolygon that does not cross itself.",
    ),
    "unknown_area_code": _e(
        422,
        "이 도시의 어느 마을에도 해당하지 않는 행정 코드입니다.",
        "An administrative code that no village of the city has.",
    ),
    "empty_area": _e(422, "지정한 지역 안에 마을이 없습니다.", "The area covers no village."),
    "empty_target": _e(
        422,
        "방송할 곳이 없습니다. 전체, 읍·면 또는 마을을 고르세요.",
        "No target: choose all, districts or villages.",
    ),
    "idempotency_key_reused": _e(
        422,
        "이 Idempotency-Key는 다른 요청에 이미 쓰였습니다.",
        "The Idempotency-Key was already used for a different request.",
    ),
    "send_at_in_past": _e(422, "예약 시각이 이미 지났습니다.", "send_at is in the past."),
    "missing_send_at": _e(
        422,
        "예약 시각(send_at)이나 매일 방송 시각(daily_at)이 필요합니다.",
        "A schedule needs send_at, or daily_at with until.",
    ),
    "recurrence_without_end": _e(
        422,
        "끝없는 반복은 예약할 수 없습니다.",
        "A repetition needs repeat_count, a daily recurrence until.",
    ),
    "invalid_recurrence": _e(
        422,
        "반복 설정이 올바르지 않습니다.",
        "The repetition fields do not fit together or are out of range.",
    ),
    "recurrence_never_fires": _e(
        422, "종료일까지 방송할 날이 없습니다.", "No occurrence falls before until."
    ),
    "until_too_far": _e(422, "종료일이 너무 멉니다.", "until is too far from the start."),
    "repetition_over_rate_limit": _e(
        422,
        "반복 방송이 한 시간 방송 한도를 넘습니다.",
        "The repetition would send more broadcasts in an hour than the rate limit allows.",
    ),
    "invalid_quiet_hours": _e(
        422,
        '방송 금지 시간은 "HH:MM-HH:MM" 또는 "off"입니다.',
        'Quiet hours are "HH:MM-HH:MM" (e.g. "21:00-07:00") or "off".',
    ),
    "invalid_template": _e(422, "문구 틀이 올바르지 않습니다.", "The template is not valid."),
    "unknown_placeholder": _e(
        422, "문구 틀에 없는 자리 이름입니다.", "A value names a placeholder the template lacks."
    ),
    "missing_placeholder": _e(
        422, "문구 틀의 자리에 넣을 값이 없습니다.", "A placeholder of the template has no value."
    ),
    "invalid_values": _e(
        422,
        "values는 자리 이름과 글의 JSON 객체여야 합니다.",
        "values must be a JSON object of placeholder names to text.",
    ),
    "text_and_template": _e(
        422, "문구와 문구 틀 중 하나만 주세요.", "Give either text or template values, not both."
    ),
    "values_without_template": _e(
        422,
        "항목 값(values)은 문구 틀과 함께 써야 합니다.",
        "values fill a template, and there is none (or the schedule was not made from one).",
    ),
    "weak_password": _e(
        422,
        "비밀번호가 너무 짧거나 사용자 이름과 같습니다.",
        "The password is too short or equals the user name.",
    ),
    "scope_required": _e(
        422,
        "이 역할에는 담당 읍·면이나 마을이 필요합니다.",
        "The role needs the districts or villages it covers.",
    ),
    "scope_not_allowed": _e(
        422,
        "시 전체를 맡는 역할에는 읍·면이나 마을을 줄 수 없습니다.",
        "The role is city-wide and takes no districts or villages.",
    ),
    "unknown_district": _e(422, "없는 읍·면이 포함되어 있습니다.", "Unknown district ids."),
    "unknown_village": _e(422, "없는 마을이 포함되어 있습니다.", "Unknown village ids."),
    "invalid_csv": _e(
        422,
        "CSV에 잘못된 행이 있어 아무것도 반영하지 않았습니다.",
        "The CSV has invalid rows (each named by line); nothing was imported.",
    ),
    "invalid_receipt_key": _e(
        422,
        "수신 확인 키가 올바른 Ed25519 공개 키가 아닙니다.",
        "The receipt key is not a valid Ed25519 public key.",
    ),
    "invalid_receipt_key_proof": _e(
        422,
        "수신 확인 키의 소유 증명이 맞지 않습니다.",
        "The proof of possession of the receipt key does not verify.",
    ),
    "empty_audio": _e(422, "오디오 파일이 비어 있습니다.", "The audio file is empty."),
    "unsupported_audio": _e(
        422, "지원하지 않는 오디오 형식입니다.", "The audio format is not supported."
    ),
    "corrupt_audio": _e(422, "오디오 파일이 손상되었습니다.", "The audio file is damaged."),
    "audio_too_long": _e(422, "오디오가 너무 깁니다.", "The audio is too long."),
    "silent_audio": _e(
        422, "녹음에 들리는 소리가 없습니다.", "The recording contains no audible sound."
    ),
    "audio_timeout": _e(
        422, "오디오 변환 시간이 초과되었습니다.", "Converting the audio took too long."
    ),
    "unknown_language": _e(422, "지원하지 않는 언어입니다.", "That language is not supported."),
    "invalid_texts": _e(
        422,
        "언어별 문구는 JSON 객체여야 합니다.",
        'Texts per language must be a JSON object such as {"vi": "..."}.',
    ),
    "empty_text": _e(422, "방송 문구가 비어 있습니다.", "The announcement text is empty."),
    "text_too_long": _e(422, "방송 문구가 너무 깁니다.", "The announcement text is too long."),
    "unspeakable_text": _e(
        422,
        "방송 문구에 읽을 수 있는 글자가 없습니다.",
        "The announcement text has no letters or digits to read aloud.",
    ),
    "unknown_speech_engine": _e(422, "알 수 없는 음성 엔진입니다.", "Unknown speech engine."),
    "fallback_channel_unavailable": _e(
        422,
        "이 게이트웨이에서 쓸 수 없는 대체 수단입니다.",
        "That channel cannot be used for fallback on this gateway.",
    ),
    "sms_text_empty": _e(422, "보낼 문자 내용이 없습니다.", "The SMS text is empty."),
    "sms_text_too_long": _e(
        422,
        "문자가 너무 깁니다. 나누어 보낼 수 있는 최대 길이를 넘었습니다.",
        "The SMS would take more parts than `GATEWAY_SMS_MAX_PARTS` allows.",
    ),
    "sms_report_status_unknown": _e(
        422,
        "알 수 없는 수신 결과 코드입니다.",
        "Unknown delivery report code (Kannel's are 1, 2, 4, 8 and 16).",
    ),
    "push_endpoint_invalid": _e(
        422,
        "알림 주소(endpoint)가 올바르지 않습니다.",
        "The push subscription's endpoint is not an https URL of a push service of sane length.",
    ),
    "push_keys_invalid": _e(
        422,
        "알림 구독의 암호 키가 올바르지 않습니다.",
        "The push subscription's keys are not valid: p256dh must be a 65-byte uncompressed "
        "P-256 point, auth 16 bytes (base64url).",
    ),
    # 415: the body is not of a kind this route reads.
    "cap_invalid_media_type": _e(
        415,
        "CAP 문서는 application/cap+xml 또는 application/xml로 보내 주세요.",
        "Send the CAP document as application/cap+xml or application/xml.",
    ),
    # 429: too much, too fast; `Retry-After` says when to come back.
    "rate_limited_user": _e(
        429,
        "한 사람이 한 시간에 보낼 수 있는 방송 수를 넘었습니다.",
        "The per-person hourly limit.",
    ),
    "rate_limited_village": _e(
        429,
        "마을에 한 시간에 보낼 수 있는 마을 공지 수를 넘었습니다.",
        "The per-village hourly limit of village notices.",
    ),
    "rate_limited_head_disaster": _e(
        429,
        "이장이 한 시간에 보낼 수 있는 재난 방송 수를 넘었습니다. 읍·면사무소에 전화하세요.",
        "A village head's hourly limit of disaster alerts; call the district office.",
    ),
    "preview_busy": _e(
        429,
        "진행 중인 미리 듣기가 너무 많습니다.",
        "Too many previews in progress; try when one has finished.",
    ),
    "push_rate_limited": _e(
        429,
        "알림 신청이 너무 잦습니다. 잠시 후 다시 시도해 주세요.",
        "Too many push subscription changes from one address in a minute.",
    ),
    "preview_rate_limited": _e(
        429, "미리 듣기 횟수 한도를 넘었습니다.", "The per-minute limit of previews."
    ),
    "too_many_tickets": _e(
        429,
        "쓰지 않은 실시간 방송 티켓이 너무 많습니다.",
        "Too many unused live tickets; use one or wait until they expire.",
    ),
    "enrollment_throttled": _e(
        429,
        "이 주소에서 틀린 설치 코드가 너무 많습니다.",
        "Too many wrong enrollment codes from this address.",
    ),
    "login_throttled": _e(
        429,
        "이 주소에서 로그인 실패가 너무 많습니다.",
        "Too many failed logins from this address.",
    ),
    # 503: the gateway cannot do it now; try again later.
    "database_unavailable": _e(
        503, "데이터베이스에 연결할 수 없습니다.", "The database is unavailable."
    ),
    "broker_unavailable": _e(
        503,
        "MQTT 브로커가 확인하지 않았습니다.",
        "The MQTT broker did not confirm the change; issue it again.",
    ),
    "broker_hooks_unconfigured": _e(
        503,
        "브로커 훅 비밀값이 설정되지 않았습니다.",
        "The broker hook secret is missing or too weak on this replica.",
    ),
    "checkpoint_key_missing": _e(
        503,
        "감사 기록 체크포인트 키가 설정되지 않았습니다.",
        "The audit checkpoint key is not set on this replica.",
    ),
    "gateway_stopping": _e(
        503, "게이트웨이가 멈추는 중입니다.", "The gateway is stopping; try again in a moment."
    ),
    "audio_worker_failed": _e(
        503, "오디오 변환기가 응답하지 않습니다.", "The audio converter failed; try again shortly."
    ),
    "audio_worker_busy": _e(
        503, "오디오 변환 요청이 많습니다.", "The audio converter is busy; try again shortly."
    ),
    "speech_engine_unavailable": _e(
        503, "음성 합성기를 사용할 수 없습니다.", "The speech synthesizer is not available."
    ),
    "speech_engine_failed": _e(
        503, "음성 합성에 실패했습니다.", "Speech synthesis failed; try again shortly."
    ),
    # Households and residents (gateway/residents).
    "household_not_found": _e(404, "가구를 찾을 수 없습니다.", "No such household."),
    "resident_not_found": _e(404, "주민을 찾을 수 없습니다.", "No such resident."),
    "signup_not_found": _e(
        404,
        "가입 요청을 찾을 수 없습니다. 처음부터 다시 해 주세요.",
        "No sign-up is waiting for a code under this id; start again.",
    ),
    "duplicate_resident": _e(
        409,
        "이미 등록된 전화번호입니다.",
        "A resident with this phone number is already signed up in the city.",
    ),
    "duplicate_household": _e(
        409,
        "같은 주소의 가구가 이미 있습니다.",
        "The village already has a household at this address.",
    ),
    "resident_erased": _e(
        409,
        "동의 철회 또는 보유 기간 만료로 전화번호가 삭제되었습니다.",
        "The resident's number was erased (consent withdrawn or run out).",
    ),
    "verification_expired": _e(
        409,
        "인증번호가 만료되었거나 입력 횟수를 넘었습니다.",
        "The verification code expired or was tried five times; ask for a new one.",
    ),
    "invalid_phone_number": _e(
        422,
        "휴대전화 번호가 올바르지 않습니다 (010-0000-0000).",
        "Not a Korean mobile number (010-XXXX-XXXX, +82 10..., 010XXXXXXXX).",
    ),
    "invalid_receiver": _e(
        422,
        "이 마을의 가정용 수신기가 아닙니다.",
        "The speaker is not an indoor receiver (household_receiver) of the household's village.",
    ),
    "invalid_volume": _e(
        422,
        "수신기 음량은 0부터 100까지의 정수입니다.",
        "The receiver volume is a whole number from 0 to 100.",
    ),
    "invalid_household_csv": _e(
        422,
        "CSV에 잘못된 행이 있어 아무것도 가져오지 않았습니다.",
        "The CSV has bad rows (or encoding); nothing was imported. `lines` lists each: line, "
        "code, ko, en.",
    ),
    "invalid_consent_date": _e(
        422,
        "동의 일시가 올바르지 않습니다.",
        "The consent date is missing, malformed or in the future.",
    ),
    "consent_required": _e(
        422, "개인정보 수집·이용 동의가 필요합니다.", "Signing up needs the resident's consent."
    ),
    "outdated_consent": _e(
        422,
        "동의서 내용이 바뀌었습니다. 다시 읽고 동의해 주세요.",
        "The consent text version shown is not the current one.",
    ),
    "invalid_verification_code": _e(
        422,
        "인증번호가 맞지 않습니다.",
        "Wrong verification code; the message says how many tries are left.",
    ),
    "signup_rate_limited": _e(
        429,
        "인증번호 요청이 너무 많습니다. 잠시 후 다시 시도해 주세요.",
        "Too many verification codes for this number or from this address within an hour.",
    ),
    "phone_key_unavailable": _e(
        503,
        "전화번호 암호화 키가 설정되어 있지 않습니다.",
        "The key that sealed this phone number is not configured (GATEWAY_PHONE_KEY_PREVIOUS).",
    ),
}


def documented(
    *codes: str, notes: Mapping[str, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """A route's `responses=`: the codes grouped by status, each with its meaning.

    `notes` adds what a code means on this route in particular, after its general meaning.
    """
    unknown = [code for code in codes if code not in CATALOG]
    if unknown:
        raise KeyError(f"not in the error catalog: {', '.join(unknown)}")
    extra = notes or {}
    stray = sorted(set(extra) - set(codes))
    if stray:
        raise KeyError(f"notes for codes not documented here: {', '.join(stray)}")
    lines: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        entry = CATALOG[code]
        note = f" {extra[code]}" if code in extra else ""
        lines.setdefault(entry.status, []).append(f"- `{code}`: {entry.en}{note}")
    return {status: {"description": "\n".join(lines[status])} for status in sorted(lines)}


def markdown_table() -> str:
    rows = ["| status | code | meaning | 의미 |", "|---|---|---|---|"]
    for code, entry in sorted(CATALOG.items(), key=lambda item: item[1].status):
        rows.append(f"| {entry.status} | `{code}` | {entry.en} | {entry.ko} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
