"""axe-core in the browser tests: a page in a given state has no serious or critical violation.

The script is vendored (tests/support/vendor/axe-core) so the tests need no network. It is run
through Playwright's evaluate, which the pages' Content-Security-Policy does not govern, so the
policy stays as strict as users get it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE_JS = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
FAILING_IMPACTS = frozenset({"serious", "critical"})
# WCAG 2.1 A and AA plus axe's best practices (landmarks, regions, heading order).
RUN_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
    },
    "resultTypes": ["violations"],
}


@cache
def _source() -> str:
    return AXE_JS.read_text(encoding="utf-8")


def violations(page: Page) -> list[dict[str, Any]]:
    """axe's serious and critical violations on the page as it is now."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(f"() => {{ {_source()}\n}}")
        page.evaluate("() => { window.axe = window.axe || axe; }")
    found: list[dict[str, Any]] = page.evaluate(
        "options => axe.run(document, options).then(r => r.violations)", RUN_OPTIONS
    )
    return [v for v in found if v.get("impact") in FAILING_IMPACTS]


def describe(found: list[dict[str, Any]]) -> str:
    lines = []
    for violation in found:
        lines.append(f"{violation['impact']} {violation['id']}: {violation['help']}")
        for node in violation["nodes"][:5]:
            lines.append(f"    {' '.join(node['target'])}: {node.get('failureSummary', '')}")
    return "\n".join(lines)


def assert_accessible(page: Page, state: str) -> None:
    """Fail with axe's own words when the page, in the named state, has a serious or critical
    violation (WCAG 2.1 AA and axe's best practices)."""
    found = violations(page)
    assert not found, f"axe-core found in {state!r}:\n{describe(found)}"
