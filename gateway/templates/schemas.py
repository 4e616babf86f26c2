"""Request and response shapes of the template API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from wire.contract import Category

# A template's body is read out after its placeholders are filled; keep room for the values.
MAX_BODY_CHARS = 1500
MAX_VALUE_CHARS = 200
TEXTS_DOC = (
    'The body in other languages, by BCP 47 primary tag ({"vi": "..."}), using the '
    "body's and title's placeholders; sending from the template carries them, filled, into "
    "the broadcast's `texts`. Checked like a broadcast's texts (unknown_language, empty_text, "
    "text_too_long, unspeakable_text); a placeholder the body and title do not have is "
    "invalid_template."
)


class TemplateCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    category: Category
    title: str | None = Field(default=None, max_length=200)
    body: str = Field(
        min_length=1,
        max_length=MAX_BODY_CHARS,
        description="The announcement, with `{placeholder}` names filled per use; "
        "`{{` and `}}` for literal braces.",
    )
    district_id: int | None = Field(
        default=None, description="Keep it for one district's staff; omit for the whole city."
    )
    texts: dict[str, str] = Field(default_factory=dict, description=TEXTS_DOC)


class TemplateUpdate(BaseModel):
    # A template's district is fixed at creation: refused, not silently ignored.
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=100)
    category: Category | None = None
    title: str | None = Field(default=None, max_length=200)
    body: str | None = Field(default=None, min_length=1, max_length=MAX_BODY_CHARS)
    texts: dict[str, str] | None = Field(default=None, description="Replaces all its texts.")


class TemplateRead(BaseModel):
    id: int
    name: str
    category: Category
    title: str | None
    body: str
    texts: dict[str, str] = Field(description="The body in other languages, by tag.")
    district_id: int | None
    placeholders: list[str] = Field(description="The names to give in `values`, in order.")
    created_by: str
    created_at: datetime
    updated_at: datetime


class TemplatePage(BaseModel):
    items: list[TemplateRead]
    total: int


class TemplateValues(BaseModel):
    values: dict[str, str | int | float] = Field(default_factory=dict)


class RenderedTemplate(BaseModel):
    template_id: int
    category: Category
    title: str | None
    text: str
    texts: dict[str, str] = Field(description="The text in other languages, filled.")
