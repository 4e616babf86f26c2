"""The gateway in process with the in-memory bus (the flow tests' stack), for the pages' API."""

from __future__ import annotations

from tests.flow.conftest import stack

__all__ = ["stack"]
