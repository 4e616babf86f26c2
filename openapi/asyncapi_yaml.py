"""YAML for ``openapi/asyncapi.yaml``: Markdown descriptions re-wrapped, long text as blocks."""

from __future__ import annotations

import re
import textwrap
from typing import Any, Final

import yaml

WRAP: Final = 96
_ITEM = re.compile(r"^(?:- |\d+\. )")


def reflow(text: str) -> str:
    """Re-wrap the paragraphs and list items of a Markdown text; keep headings, tables, code."""
    blocks: list[str] = []
    for block in text.strip("\n").split("\n\n"):
        if block.startswith(("#", "|", "```")):
            blocks.append(block)
            continue
        items: list[list[str]] = []
        for line in block.splitlines():
            if _ITEM.match(line) or not items:
                items.append([line.strip()])
            else:
                items[-1].append(line.strip())
        wrapped = []
        for words in items:
            marker = _ITEM.match(words[0])
            wrapped.append(
                textwrap.fill(
                    " ".join(words),
                    width=WRAP,
                    subsequent_indent=" " * (marker.end() if marker else 0),
                    break_long_words=False,
                    break_on_hyphens=False,
                )
            )
        blocks.append("\n".join(wrapped))
    return "\n\n".join(blocks) + "\n"


def _reflow_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: reflow(value)
            if key == "description" and isinstance(value, str) and "\n" in value
            else _reflow_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_reflow_descriptions(item) for item in node]
    return node


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(document: Any) -> str:
    """The document as YAML, in its own key order, with every multi-line description re-wrapped."""
    return yaml.dump(
        _reflow_descriptions(document),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
