"""A Python interpreter as a speaker's box has it: only ``maeul[agent]`` installed.

`python_agent_only` is a command line that runs Python with the gateway's dependencies (the
`gateway` extra in pyproject.toml) and the gateway's own package refused at import, as if they
were not installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Distributions whose import name is not their own.
_IMPORT_NAMES = {
    "pyjwt": "jwt",
    "argon2-cffi": "argon2",
    "python-multipart": "multipart",
    "prometheus-client": "prometheus_client",
    "pydantic-settings": "pydantic_settings",
}


def _distribution(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return match.group(0).lower()


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def gateway_modules() -> list[str]:
    """The top-level modules of the `gateway` extra's distributions, and the gateway itself."""
    project = pyproject()["project"]
    assert isinstance(project, dict)
    extra = project["optional-dependencies"]["gateway"]
    names = {_distribution(r) for r in extra}
    return sorted({_IMPORT_NAMES.get(n, n.replace("-", "_")) for n in names} | {"gateway"})


_REFUSE = """
import sys
BLOCKED = frozenset({blocked!r})
class _NotOnASpeaker:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on a speaker)", name=name)
        return None
sys.meta_path.insert(0, _NotOnASpeaker())
"""


def python_agent_only(code: str) -> list[str]:
    """``python -c`` running `code` with the gateway's modules refused."""
    return [sys.executable, "-c", _REFUSE.format(blocked=gateway_modules()) + code]
