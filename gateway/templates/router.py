"""HTTP routes for announcement templates: list, create, edit, delete, and preview filled."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from gateway.auth import Anyone, Principal, Role, allow
from gateway.deps import CityDep, NowDep, SessionDep
from gateway.error_catalog import documented
from gateway.templates import service
from gateway.templates.schemas import (
    RenderedTemplate,
    TemplateCreate,
    TemplatePage,
    TemplateRead,
    TemplateUpdate,
    TemplateValues,
)
from wire.contract import Category

router = APIRouter(tags=["templates"])

# District staff keep their district's templates, the city and its safety office the city's;
# each template only by whoever may send its category everywhere it is kept for
# (``service.authorize_change``).
Editor = Annotated[Principal, allow(Role.CITY_ADMIN, Role.DISTRICT_OFFICER, Role.SAFETY_OFFICER)]


@router.get("/templates", operation_id="list_templates")
async def list_templates(
    session: SessionDep,
    _user: Anyone,
    city: CityDep,
    district_id: int | None = None,
    category: Category | None = None,
    name: str | None = None,
) -> TemplatePage:
    """City-wide templates, and with `district_id` that district's own as well."""
    return await service.list_templates(
        session, city, district_id=district_id, category=category, name=name
    )


@router.post(
    "/templates",
    status_code=201,
    operation_id="create_template",
    responses=documented(
        "template_outside_rights", "district_not_found", "duplicate_template", "invalid_template"
    ),
)
async def create_template(
    body: TemplateCreate, session: SessionDep, user: Editor, city: CityDep, now: NowDep
) -> TemplateRead:
    return await service.create_template(session, city, body, principal=user, now=now)


@router.get(
    "/templates/{template_id}",
    operation_id="get_template",
    responses=documented("template_not_found"),
)
async def get_template(
    template_id: int, session: SessionDep, _user: Anyone, city: CityDep
) -> TemplateRead:
    return service.to_read(await service.load_template(session, city.id, template_id))


@router.patch(
    "/templates/{template_id}",
    operation_id="update_template",
    responses=documented(
        "template_outside_rights", "template_not_found", "duplicate_template", "invalid_template"
    ),
)
async def update_template(
    template_id: int,
    body: TemplateUpdate,
    session: SessionDep,
    user: Editor,
    city: CityDep,
    now: NowDep,
) -> TemplateRead:
    return await service.update_template(session, city, template_id, body, principal=user, now=now)


@router.delete(
    "/templates/{template_id}",
    status_code=204,
    operation_id="delete_template",
    responses=documented("template_outside_rights", "template_not_found"),
)
async def delete_template(
    template_id: int, session: SessionDep, user: Editor, city: CityDep
) -> None:
    """Schedules made from the template keep their text: it was filled when they were made."""
    await service.delete_template(session, city, template_id, principal=user)


@router.post(
    "/templates/{template_id}/render",
    operation_id="render_template",
    responses=documented(
        "template_not_found", "unknown_placeholder", "missing_placeholder", "invalid_values"
    ),
)
async def render_template(
    template_id: int, body: TemplateValues, session: SessionDep, _user: Anyone, city: CityDep
) -> RenderedTemplate:
    """The text a broadcast from this template would read out, without sending anything."""
    return await service.render_template(session, city, template_id, body.values)
