"""The in-process gateway of the flow tests, reused here."""

from __future__ import annotations

from tests.flow.conftest import stack

__all__ = ["stack"]
