"""How many parts a text takes as UCS-2 SMS: 70 characters alone, 67 each once split (the
concatenation header takes 6 of the 140 bytes). Characters outside the Basic Multilingual Plane
take two UTF-16 units."""

from __future__ import annotations

from typing import Final

SINGLE_UNITS: Final = 70
PART_UNITS: Final = 67


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-be")) // 2


def count_parts(text: str) -> int:
    units = utf16_units(text)
    if units <= SINGLE_UNITS:
        return 1
    return -(-units // PART_UNITS)
