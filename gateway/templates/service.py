"""Templates: placeholders, rendering with values, managing templates, and the seeded set."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from audio.speech.languages import validate_texts
from gateway import scopes
from gateway.auth import Principal
from gateway.errors import Conflict, Forbidden, InvalidRequest, NotFound
from gateway.places import service as places
from gateway.places.models import City
from gateway.templates.models import Template
from gateway.templates.schemas import (
    MAX_VALUE_CHARS,
    RenderedTemplate,
    TemplateCreate,
    TemplatePage,
    TemplateRead,
    TemplateUpdate,
)
from wire.contract import Category

_TOKEN: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
# Letters of any script (Hangul included), digits and underscores: {날짜}, {place_name}.
_NAME: Final = re.compile(r"\w{1,40}")
_MAX_VALUES: Final = 50


# --------------------------------------------------------------------------------------------
# Placeholders


def _invalid_template(detail_ko: str, detail_en: str) -> InvalidRequest:
    return InvalidRequest(
        "invalid_template",
        ko=f"템플릿 형식이 올바르지 않습니다: {detail_ko}",
        en=f"The template is not valid: {detail_en}",
    )


def placeholders(text: str) -> list[str]:
    """The ``{name}`` placeholders of ``text`` in order of first use."""
    names: list[str] = []
    for match in _TOKEN.finditer(text):
        token = match[0]
        if token in ("{{", "}}"):
            continue
        name = match[1]
        if name is None:
            raise _invalid_template(
                f"짝이 맞지 않는 중괄호 '{token}'가 있습니다 (글자 그대로 쓰려면 '{token * 2}').",
                f"unbalanced {token!r} (write {token * 2!r} for a literal brace)",
            )
        name = name.strip()
        if not _NAME.fullmatch(name):
            raise _invalid_template(
                f"'{{{name}}}'은(는) 항목 이름으로 쓸 수 없습니다 (글자·숫자·밑줄, 40자 이내).",
                f"{{{name}}} is not a placeholder name (letters, digits, underscore; at most 40)",
            )
        if name not in names:
            names.append(name)
    return names


def _fill(text: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        token = match[0]
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return values[match[1].strip()]

    return _TOKEN.sub(replace, text)


@dataclass(frozen=True)
class Rendered:
    title: str | None
    text: str
    texts: dict[str, str]


def checked_texts(texts: Mapping[str, str], title: str | None, body: str) -> dict[str, str]:
    """A template's texts in other languages, checked like a broadcast's; each may use only
    the placeholders of its body and title (their values are given once, for all)."""
    known = set(placeholders(title or "") + placeholders(body))
    checked = validate_texts(texts)
    for tag, text in checked.items():
        extra = [name for name in placeholders(text) if name not in known]
        if extra:
            raise _invalid_template(
                f"{tag} 문구의 항목 {', '.join(extra)}이(가) 본문과 제목에 없습니다.",
                f"the {tag} text uses {', '.join(extra)}, which the body and title do not have",
            )
    return checked


def render(template: Template, values: Mapping[str, object]) -> Rendered:
    """Fill every placeholder of the title and body; an unknown name or a missing value is a
    422 naming it, so nothing half-filled is ever read out."""
    wanted = placeholders(template.title or "") + placeholders(template.body)
    expected = list(dict.fromkeys(wanted))
    unknown = [name for name in values if name not in expected]
    listed = ", ".join(expected) or "(없음)"
    if unknown:
        raise InvalidRequest(
            "unknown_placeholder",
            ko=f"템플릿 '{template.name}'에 없는 항목입니다: {', '.join(unknown)}. "
            f"이 템플릿의 항목: {listed}",
            en=f"Template {template.name!r} has no placeholder {', '.join(unknown)}; "
            f"it has: {', '.join(expected) or '(none)'}.",
        )
    filled: dict[str, str] = {}
    for name in expected:
        value = values.get(name)
        text = "" if value is None else str(value).strip()
        if not text:
            raise InvalidRequest(
                "missing_placeholder",
                ko=f"템플릿 '{template.name}'의 항목 '{name}' 값이 필요합니다. 항목: {listed}",
                en=f"Template {template.name!r} needs a value for {{{name}}}; "
                f"it has: {', '.join(expected)}.",
            )
        if len(text) > MAX_VALUE_CHARS:
            raise InvalidRequest(
                "invalid_values",
                ko=f"항목 '{name}' 값은 {MAX_VALUE_CHARS}자까지 쓸 수 있습니다.",
                en=f"The value of {{{name}}} is limited to {MAX_VALUE_CHARS} characters.",
            )
        filled[name] = text
    title = _fill(template.title, filled) if template.title else None
    texts = validate_texts({tag: _fill(text, filled) for tag, text in template.texts.items()})
    return Rendered(title=title, text=_fill(template.body, filled), texts=texts)


def parse_values(raw: str | None) -> dict[str, object]:
    """A form field's JSON object of placeholder values."""
    if raw is None or not raw.strip():
        return {}
    try:
        values = json.loads(raw)
    except ValueError:
        values = None
    if not isinstance(values, dict) or len(values) > _MAX_VALUES:
        raise InvalidRequest(
            "invalid_values",
            ko='항목 값(values)은 {"항목": "값"} 형태의 JSON 객체여야 합니다.',
            en='values must be a JSON object of placeholder names to text, e.g. {"날짜": "5일"}.',
        )
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidRequest(
                "invalid_values",
                ko=f"항목 '{name}'의 값은 글자나 숫자여야 합니다.",
                en=f"The value of {name!r} must be text or a number.",
            )
    return values


@dataclass(frozen=True)
class Composed:
    """The text and title a broadcast or schedule is sent with, and the template behind them."""

    text: str | None
    title: str | None
    template_id: int | None = None
    values: dict[str, str] | None = None
    # The template's texts in other languages, filled: those the request gives win.
    texts: Mapping[str, str] = field(default_factory=dict)

    def texts_with(self, given: Mapping[str, str]) -> dict[str, str]:
        return dict(sorted({**self.texts, **given}.items()))


async def compose(
    session: AsyncSession,
    city: City,
    *,
    text: str | None,
    title: str | None,
    template_id: int | None,
    values: str | None,
) -> Composed:
    """Typed text as given, or a template filled with ``values`` (a JSON object)."""
    if template_id is None:
        if values is not None and values.strip():
            raise InvalidRequest(
                "values_without_template",
                ko="항목 값(values)은 템플릿(template_id)과 함께 보내 주세요.",
                en="values fill a template: give template_id with them.",
            )
        return Composed(text=text, title=title)
    if text is not None:
        raise InvalidRequest(
            "text_and_template",
            ko="방송 문구(text)와 템플릿(template_id) 중 하나만 보내 주세요.",
            en="Give either text or template_id, not both.",
        )
    template = await load_template(session, city.id, template_id)
    parsed = parse_values(values)
    rendered = render(template, parsed)
    return Composed(
        text=rendered.text,
        title=title if title is not None else rendered.title,
        template_id=template.id,
        values={k: str(v).strip() for k, v in parsed.items()},
        texts=rendered.texts,
    )


# --------------------------------------------------------------------------------------------
# Managing templates


def _missing(template_id: int) -> NotFound:
    return NotFound(
        "template_not_found",
        ko=f"템플릿 {template_id}을(를) 찾을 수 없습니다.",
        en=f"Template {template_id} does not exist.",
    )


def _duplicate(name: str) -> Conflict:
    return Conflict(
        "duplicate_template",
        ko=f"이름이 '{name}'인 템플릿이 이미 있습니다.",
        en=f"A template named {name!r} already exists.",
    )


def _outside_rights() -> Forbidden:
    return Forbidden(
        "template_outside_rights",
        ko="이 템플릿을 바꿀 권한이 없습니다. 템플릿은 그 종류의 방송을 템플릿이 쓰이는 "
        "지역 전체(시 전체 또는 해당 읍·면·동)에 보낼 수 있는 사람만 만들고 고치고 지울 수 "
        "있습니다.",
        en="You may not change this template: only someone who may send its category to every "
        "place it is kept for (the whole city, or its district) may create, edit or delete it.",
    )


async def authorize_change(
    session: AsyncSession, principal: Principal, category: Category, district_id: int | None
) -> None:
    """Whoever changes a template could send it everywhere it is kept for: a city-wide one
    takes a city-wide sender of its category, a district's one a sender covering the district."""
    try:
        await scopes.authorize_send(
            session,
            principal,
            category,
            all_villages=district_id is None,
            district_ids=() if district_id is None else (district_id,),
            village_ids=(),
        )
    except Forbidden:
        raise _outside_rights() from None


def to_read(template: Template) -> TemplateRead:
    return TemplateRead(
        id=template.id,
        name=template.name,
        category=Category(template.category),
        title=template.title,
        body=template.body,
        texts=dict(template.texts),
        district_id=template.district_id,
        placeholders=list(
            dict.fromkeys(placeholders(template.title or "") + placeholders(template.body))
        ),
        created_by=template.created_by,
        created_at=template.created_at,
        updated_at=template.updated_at,
    )


async def load_template(session: AsyncSession, city_id: int, template_id: int) -> Template:
    template = await session.get(Template, template_id)
    if template is None or template.city_id != city_id:
        raise _missing(template_id)
    return template


async def list_templates(
    session: AsyncSession,
    city: City,
    *,
    district_id: int | None,
    category: Category | None,
    name: str | None,
) -> TemplatePage:
    """City-wide templates and, with ``district_id``, that district's own; without it, all."""
    query = select(Template).where(Template.city_id == city.id)
    if district_id is not None:
        query = query.where(
            or_(Template.district_id.is_(None), Template.district_id == district_id)
        )
    if category is not None:
        query = query.where(Template.category == category.value)
    if name is not None:
        query = query.where(Template.name == name)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(
        query.order_by(Template.district_id.is_not(None), Template.name, Template.id)
    )
    return TemplatePage(items=[to_read(t) for t in rows], total=total)


async def _refuse_taken_name(
    session: AsyncSession, city_id: int, name: str, *, other_than: int | None = None
) -> None:
    taken = await session.scalar(
        select(Template.id).where(Template.city_id == city_id, Template.name == name)
    )
    if taken is not None and taken != other_than:
        raise _duplicate(name)


async def _flush(session: AsyncSession, name: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _duplicate(name) from exc


async def create_template(
    session: AsyncSession,
    city: City,
    body: TemplateCreate,
    *,
    principal: Principal,
    now: datetime,
) -> TemplateRead:
    texts = checked_texts(body.texts, body.title, body.body)
    if body.district_id is not None:
        await places.load_district(session, city.id, body.district_id)
    await authorize_change(session, principal, body.category, body.district_id)
    name = body.name.strip()
    await _refuse_taken_name(session, city.id, name)
    template = Template(
        city_id=city.id,
        district_id=body.district_id,
        name=name,
        category=body.category.value,
        title=body.title,
        body=body.body,
        texts=texts,
        created_by=principal.actor,
        created_at=now,
        updated_at=now,
    )
    session.add(template)
    await _flush(session, name)
    return to_read(template)


async def update_template(
    session: AsyncSession,
    city: City,
    template_id: int,
    body: TemplateUpdate,
    *,
    principal: Principal,
    now: datetime,
) -> TemplateRead:
    template = await load_template(session, city.id, template_id)
    await authorize_change(session, principal, Category(template.category), template.district_id)
    if body.category is not None:
        # Nor may anyone turn it into a category they could not send there.
        await authorize_change(session, principal, body.category, template.district_id)
    if body.body is not None:
        placeholders(body.body)
        template.body = body.body
    if "title" in body.model_fields_set:
        placeholders(body.title or "")
        template.title = body.title
    if body.category is not None:
        template.category = body.category.value
    if body.name is not None and body.name.strip() != template.name:
        await _refuse_taken_name(session, city.id, body.name.strip(), other_than=template.id)
        template.name = body.name.strip()
    template.texts = checked_texts(
        template.texts if body.texts is None else body.texts, template.title, template.body
    )
    template.updated_at = now
    await _flush(session, template.name)
    return to_read(template)


async def delete_template(
    session: AsyncSession, city: City, template_id: int, *, principal: Principal
) -> None:
    """Schedules made from it keep their text: they were filled when scheduled."""
    template = await load_template(session, city.id, template_id)
    await authorize_change(session, principal, Category(template.category), template.district_id)
    await session.delete(template)
    await session.flush()


async def render_template(
    session: AsyncSession, city: City, template_id: int, values: Mapping[str, object]
) -> RenderedTemplate:
    template = await load_template(session, city.id, template_id)
    rendered = render(template, values)
    return RenderedTemplate(
        template_id=template.id,
        category=Category(template.category),
        title=rendered.title,
        text=rendered.text,
        texts=rendered.texts,
    )


# --------------------------------------------------------------------------------------------
# The seeded set


@dataclass(frozen=True)
class _Seed:
    name: str
    category: Category
    title: str
    body: str


SEEDED: Final[tuple[_Seed, ...]] = (
    _Seed(
        "산불 예방",
        Category.ADMINISTRATIVE,
        "산불 예방 안내",
        "주민 여러분께 알려 드립니다. 건조한 날씨가 이어져 산불 위험이 매우 높습니다. "
        "논밭두렁이나 쓰레기를 태우지 마시고, 산에 가실 때는 라이터 같은 불씨를 가져가지 "
        "마십시오. 산불을 보시면 바로 119나 {연락처}로 신고해 주시기 바랍니다.",
    ),
    _Seed(
        "산불 대피",
        Category.DISASTER,
        "산불 긴급 대피",
        "긴급 재난 방송입니다. {장소} 일대에 산불이 번지고 있습니다. 주민 여러분께서는 "
        "지금 바로 {대피장소}로 대피해 주십시오.",
    ),
    _Seed(
        "폭염 주의",
        Category.ADMINISTRATIVE,
        "폭염 주의 안내",
        "폭염 특보가 내려졌습니다. 낮 최고 기온이 {기온}도까지 오르겠습니다. 한낮에는 "
        "논밭 일과 바깥 활동을 삼가시고, 물을 자주 드시며 가까운 무더위 쉼터를 이용해 "
        "주시기 바랍니다.",
    ),
    _Seed(
        "한파 주의",
        Category.ADMINISTRATIVE,
        "한파 주의 안내",
        "한파 특보가 내려졌습니다. 아침 최저 기온이 영하 {기온}도까지 내려가겠습니다. "
        "수도 계량기와 배관이 얼지 않도록 감싸 주시고, 어르신들께서는 이른 아침 바깥 "
        "활동을 삼가 주시기 바랍니다.",
    ),
    _Seed(
        "보이스피싱 주의",
        Category.CRIME_PREVENTION,
        "전화 금융 사기 주의",
        "{경찰서}에서 알려 드립니다. 검찰, 경찰, 은행을 사칭해 돈을 보내라고 하는 전화 "
        "금융 사기가 늘고 있습니다. 전화로 돈을 보내라고 하거나 통장 비밀번호를 묻는 것은 "
        "모두 사기입니다. 이런 전화는 바로 끊고 112로 신고해 주십시오.",
    ),
    _Seed(
        "교통사고 주의",
        Category.CRIME_PREVENTION,
        "교통사고 예방 안내",
        "{경찰서}에서 알려 드립니다. 해가 짧아지면서 농기계와 보행자 교통사고가 늘고 "
        "있습니다. 밤길을 걸으실 때는 밝은 옷을 입으시고, 경운기와 트랙터에는 반사판을 꼭 "
        "붙여 주시기 바랍니다.",
    ),
    _Seed(
        "호우 대피",
        Category.DISASTER,
        "호우 긴급 대피",
        "긴급 재난 방송입니다. {지역}에 호우 경보가 내려졌습니다. 하천과 계곡 주변, "
        "산사태 위험 지역에 계신 주민께서는 지금 바로 {대피장소}로 대피해 주십시오.",
    ),
    _Seed(
        "마을 회의 안내",
        Category.VILLAGE_NOTICE,
        "마을 회의 안내",
        "주민 여러분께 알려 드립니다. {날짜} {시각}에 {장소}에서 마을 회의가 열립니다. "
        "안건은 {안건}입니다. 많이 참석해 주시기 바랍니다.",
    ),
    _Seed(
        "예방 접종 안내",
        Category.ADMINISTRATIVE,
        "예방 접종 안내",
        "{날짜}부터 {장소}에서 어르신 독감 예방 접종을 합니다. 신분증을 가지고 오시기 바랍니다.",
    ),
    _Seed(
        "분리수거 안내",
        Category.VILLAGE_NOTICE,
        "분리수거 안내",
        "{요일}은 재활용품 분리수거 날입니다. 병, 캔, 플라스틱은 깨끗이 씻어 마을 "
        "분리수거장에 내놓아 주시기 바랍니다.",
    ),
)


async def seed_templates(session: AsyncSession, city: City, *, now: datetime) -> int:
    """Add the seeded templates a city does not have yet (by name), city-wide and one notice
    template for each district's office; returns how many were added. The caller commits."""
    taken = set(await session.scalars(select(Template.name).where(Template.city_id == city.id)))
    rows = [
        Template(
            city_id=city.id,
            district_id=None,
            name=seed.name,
            category=seed.category.value,
            title=seed.title,
            body=seed.body,
            created_by="seed",
            created_at=now,
            updated_at=now,
        )
        for seed in SEEDED
        if seed.name not in taken
    ]
    districts = await places.list_districts(session, city, limit=10_000, offset=0)
    for district in districts.items:
        district_id, district_name = district.id, district.name
        name = f"{district_name} 행정복지센터 안내"
        if name in taken:
            continue
        rows.append(
            Template(
                city_id=city.id,
                district_id=district_id,
                name=name,
                category=Category.ADMINISTRATIVE.value,
                title=f"{district_name} 안내",
                body=f"{district_name} 행정복지센터에서 알려 드립니다. {{안내}} "
                "궁금하신 점은 행정복지센터로 문의해 주시기 바랍니다.",
                created_by="seed",
                created_at=now,
                updated_at=now,
            )
        )
    session.add_all(rows)
    await session.flush()
    return len(rows)
