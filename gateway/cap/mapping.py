"""How a CAP `<info>` becomes a Maeul category: a table of rules, the first that matches wins.

A rule names the CAP values it matches (`categories`, `events`, `urgency`, `severity`,
`certainty`: a list each, any one of which matches; left out: anything) and what follows:
the Maeul `category` (its priority on the speakers is the category's, see GATEWAY_PRIORITIES)
and whether the text is said twice (`repeat`). A city replaces the whole table with
GATEWAY_CAP_MAPPING (JSON, the same shape as ``DEFAULT_RULES``); an alert no rule matches is
an administrative announcement.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from gateway.cap.reading import Info
from wire.contract import Category

_HAZARDS: Final = ["Geo", "Met", "Safety", "Fire", "Health", "Env", "Infra", "CBRNE"]


class MappingRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    categories: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list)
    urgency: list[str] = Field(default_factory=list)
    severity: list[str] = Field(default_factory=list)
    certainty: list[str] = Field(default_factory=list)
    category: Category
    repeat: bool = False

    def matches(self, info: Info) -> bool:
        def any_of(wanted: Sequence[str], found: Sequence[str]) -> bool:
            return not wanted or any(f.lower() in {w.lower() for w in wanted} for f in found)

        return (
            any_of(self.categories, info.categories)
            and any_of(self.events, [info.event])
            and any_of(self.urgency, [info.urgency])
            and any_of(self.severity, [info.severity])
            and any_of(self.certainty, [info.certainty])
        )


def _rule(**fields: Any) -> MappingRule:
    return MappingRule.model_validate(fields)


# The README's "CAP 1.2 in" section shows this table.
DEFAULT_RULES: Final[tuple[MappingRule, ...]] = (
    # A threat to life now: a disaster alert, said twice.
    _rule(
        categories=[*_HAZARDS, "Security"],
        severity=["Extreme", "Severe"],
        urgency=["Immediate"],
        category="disaster",
        repeat=True,
    ),
    _rule(categories=[*_HAZARDS, "Security"], severity=["Extreme", "Severe"], category="disaster"),
    # Missing people (an amber alert, a person with dementia): the police's kind.
    _rule(categories=["Rescue"], category="crime_prevention"),
    _rule(categories=["Security"], category="crime_prevention"),
    # The rest (moderate weather, transport, other): an administrative announcement.
    _rule(category="administrative"),
)


@dataclass(frozen=True)
class Mapped:
    category: Category
    repeat: bool


def map_info(info: Info, rules: Sequence[MappingRule] | None) -> Mapped:
    for rule in rules or DEFAULT_RULES:
        if rule.matches(info):
            return Mapped(rule.category, rule.repeat)
    return Mapped(Category.ADMINISTRATIVE, False)


def rules_table(rules: Sequence[MappingRule] = DEFAULT_RULES) -> str:
    """The table as markdown, for the README (a test keeps the two the same)."""

    def cell(values: Sequence[str]) -> str:
        return ", ".join(values) if values else "any"

    lines = [
        "| # | CAP category | event | urgency | severity | certainty | Maeul category | repeat |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for number, rule in enumerate(rules, 1):
        lines.append(
            f"| {number} | {cell(rule.categories)} | {cell(rule.events)} | {cell(rule.urgency)} "
            f"| {cell(rule.severity)} | {cell(rule.certainty)} | `{rule.category.value}` "
            f"| {'yes' if rule.repeat else 'no'} |"
        )
    return "\n".join(lines)
