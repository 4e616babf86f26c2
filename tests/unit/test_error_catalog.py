"""The error catalog against the source: every code raised is listed with its status, none is dead.

The source is read, not run: every call of an error class (gateway's `MaeulError` tree, the
audio package's `AudioError` tree), of a function that only wraps one, and every error body the
app's handlers write, gives a code and the status it is answered with. The README's table and
the routes' documented errors are the catalog's too.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.error_catalog import CATALOG, documented, markdown_table
from gateway.error_handlers import _FIELD_CODES, _HTTP_CODES
from gateway.openapi_export import render

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "audio")
ROOTS = {"MaeulError": ("maeul", 500, "internal_error"), "AudioError": ("audio", 422, "")}


@dataclass(frozen=True)
class Use:
    code: str
    status: int | None  # None: a code used where no HTTP status applies (a WebSocket close)
    where: str


@dataclass(frozen=True)
class ErrorClass:
    family: str
    status: int
    code: str
    fixed: bool  # its code is the class's own: the constructor takes none


def _sources() -> dict[str, ast.Module]:
    return {
        str(path.relative_to(ROOT)): ast.parse(path.read_text(encoding="utf-8"))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name != "error_catalog.py"
    }


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _classes(sources: dict[str, ast.Module]) -> dict[str, ErrorClass]:
    """Every error class by name, with the status and code it inherits or sets."""
    bodies: dict[str, tuple[str | None, dict[str, object]]] = {}
    for tree in sources.values():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            fields: dict[str, object] = {}
            for statement in node.body:
                target = value = None
                if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                    target, value = statement.targets[0], statement.value
                elif isinstance(statement, ast.AnnAssign):
                    target, value = statement.target, statement.value
                if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
                    fields[target.id] = value.value
                if isinstance(statement, ast.FunctionDef) and statement.name == "__init__":
                    params = [a.arg for a in statement.args.args[1:]]
                    fields["fixed"] = params[:1] != ["code"]
            base = _name(node.bases[0]) if node.bases else None
            # `class QueueFull(asyncio.QueueFull)` names another module's class, not itself.
            bodies[node.name] = (base if base != node.name else None, fields)

    found: dict[str, ErrorClass] = {}

    def resolve(name: str) -> ErrorClass | None:
        if name in found:
            return found[name]
        if name not in bodies:
            return None
        base, fields = bodies[name]
        if name in ROOTS:
            family, status, code = ROOTS[name]
            inherited: ErrorClass | None = ErrorClass(family, status, code, family == "audio")
        else:
            inherited = resolve(base) if base else None
        if inherited is None:
            return None
        status, code = fields.get("status", inherited.status), fields.get("code", inherited.code)
        fixed = fields.get("fixed", inherited.fixed)
        assert isinstance(status, int), name
        assert isinstance(code, str), name
        assert isinstance(fixed, bool), name
        found[name] = ErrorClass(inherited.family, status, code, fixed)
        return found[name]

    for name in bodies:
        resolve(name)
    return found


def _constants(sources: dict[str, ast.Module]) -> dict[str, dict[str, str]]:
    """Module-level string constants: file -> name -> value."""
    out: dict[str, dict[str, str]] = {}
    for where, tree in sources.items():
        for statement in tree.body:
            target = value = None
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target, value = statement.targets[0], statement.value
            elif isinstance(statement, ast.AnnAssign):
                target, value = statement.target, statement.value
            if (
                isinstance(target, ast.Name)
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ):
                out.setdefault(where, {})[target.id] = value.value
    return out


class Resolver:
    def __init__(self, constants: dict[str, dict[str, str]]) -> None:
        self.constants = constants

    def codes(self, node: ast.expr, where: str) -> set[str] | None:
        """The code strings an expression can be, or None when the source does not say."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return {node.value}
        if isinstance(node, ast.IfExp):
            body, orelse = self.codes(node.body, where), self.codes(node.orelse, where)
            return None if body is None or orelse is None else body | orelse
        if isinstance(node, ast.Name) and node.id in self.constants.get(where, {}):
            return {self.constants[where][node.id]}
        if isinstance(node, ast.Attribute):
            values = {c[node.attr] for c in self.constants.values() if node.attr in c}
            return values if len(values) == 1 else None
        return None


def _argument(call: ast.Call, index: int, keyword: str) -> ast.expr | None:
    if len(call.args) > index:
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _wrappers(
    sources: dict[str, ast.Module], classes: dict[str, ErrorClass]
) -> dict[tuple[str, str], tuple[ErrorClass, int, str]]:
    """Functions that pass one of their parameters on as an error's code: (file, name) ->
    (the class, the parameter's position, its name)."""
    out: dict[tuple[str, str], tuple[ErrorClass, int, str]] = {}
    for where, tree in sources.items():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            params = [a.arg for a in function.args.args]
            for call in ast.walk(function):
                if not isinstance(call, ast.Call):
                    continue
                error = classes.get(_name(call.func) or "")
                if error is None or error.fixed:
                    continue
                code = _argument(call, 0, "code")
                if isinstance(code, ast.Name) and code.id in params:
                    out[(where, function.name)] = (error, params.index(code.id), code.id)
    return out


def _uses() -> Iterator[Use]:
    sources = _sources()
    classes = _classes(sources)
    wrappers = _wrappers(sources, classes)
    resolver = Resolver(_constants(sources))
    for where, tree in sources.items():
        wrapper_params = {
            wrappers[(where, f.name)][2]
            for f in ast.walk(tree)
            if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef) and (where, f.name) in wrappers
        }
        for call in ast.walk(tree):
            if not isinstance(call, ast.Call):
                continue
            at = f"{where}:{call.lineno}"
            name = _name(call.func) or ""
            error = classes.get(name)
            if error is not None and error.fixed:
                yield Use(error.code, error.status, at)
                continue
            code_node: ast.expr | None = None
            if error is not None:
                code_node = _argument(call, 0, "code")
                if code_node is None:
                    yield Use(error.code, error.status, at)
                    continue
                if isinstance(code_node, ast.Name) and code_node.id in wrapper_params:
                    continue  # the wrapper itself; its callers are the raise sites
            elif (where, name) in wrappers:
                error, index, param = wrappers[(where, name)]
                code_node = _argument(call, index, param)
            elif name == "_error" and where == "gateway/error_handlers.py" and len(call.args) >= 2:
                status = call.args[0]
                if not isinstance(status, ast.Constant) or not isinstance(
                    call.args[1], ast.Constant
                ):
                    continue  # a raised error passed on, or a code from the tables below
                error = ErrorClass("app", status.value, "", fixed=False)
                code_node = call.args[1]
            elif name == "close" and len(call.args) == 2:
                # A WebSocket closed before its handshake: a code with no HTTP status.
                codes = resolver.codes(call.args[1], where)
                for code in codes or ():
                    yield Use(code, None, at)
                continue
            else:
                yield from _error_bodies(call, at)
                continue
            codes = None if code_node is None else resolver.codes(code_node, where)
            assert codes is not None, f"{at}: the error code is not a literal or a constant"
            for code in codes:
                yield Use(code, error.status, at)


def _error_bodies(call: ast.Call, at: str) -> Iterator[Use]:
    """A response written by hand: `JSONResponse({"error": "...", ...}, status_code=...)`."""
    status = next((k.value for k in call.keywords if k.arg == "status_code"), None)
    if not (isinstance(status, ast.Constant) and isinstance(status.value, int)):
        return
    for body in call.args[:1]:
        if not isinstance(body, ast.Dict):
            continue
        for key, value in zip(body.keys, body.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and key.value == "error"
                and isinstance(value, ast.Constant)
            ):
                yield Use(str(value.value), status.value, at)


def _all_uses() -> list[Use]:
    uses = list(_uses())
    uses += [
        Use(code, status, "gateway/error_handlers.py") for status, (code, *_) in _HTTP_CODES.items()
    ]
    uses += [Use(code, 422, "gateway/error_handlers.py") for code, *_ in _FIELD_CODES.values()]
    return uses


USES = _all_uses()


def test_the_scan_finds_the_error_sites() -> None:
    # A guard against a scan that silently finds nothing.
    assert len({u.code for u in USES}) > 90
    assert any(
        (u.code, u.status) == ("quiet_hours", 409)
        and u.where.startswith("gateway/schedules/quiet_hours.py:")
        for u in USES
    ), "a code raised through a helper that builds the error"
    assert {"invalid_recurrence", "unknown_village", "owner_suspended"} <= {u.code for u in USES}


def test_every_code_raised_is_in_the_catalog_with_the_status_it_is_raised_with() -> None:
    missing = sorted({f"{u.code} ({u.where})" for u in USES if u.code not in CATALOG})
    assert not missing, f"codes missing from gateway/error_catalog.py: {missing}"
    wrong = sorted(
        f"{u.code}: raised as {u.status} at {u.where}, catalogued as {CATALOG[u.code].status}"
        for u in USES
        if u.status is not None and u.status != CATALOG[u.code].status
    )
    assert not wrong, wrong


def test_every_code_in_the_catalog_is_raised_somewhere() -> None:
    dead = sorted(set(CATALOG) - {u.code for u in USES})
    assert not dead, f"codes in the catalog that nothing raises: {dead}"


def test_every_entry_has_both_languages() -> None:
    for code, entry in CATALOG.items():
        assert entry.ko.strip(), code
        assert entry.en.strip(), code
        assert "|" not in entry.ko + entry.en, f"{code}: a pipe breaks the README's table"


def test_the_readme_table_is_the_catalog() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    start = readme.index("## Errors")
    table: list[str] = []
    for line in readme[start + 1 :]:
        if line.startswith("|"):
            table.append(line)
        elif table or line.startswith("## "):
            break
    assert "\n".join(table) + "\n" == markdown_table(), (
        "README.md's error table is stale: replace it with `python -m gateway.error_catalog`"
    )


def test_documented_groups_codes_by_status() -> None:
    responses = documented("schedule_busy", "schedule_not_found", "quiet_hours")
    assert list(responses) == [404, 409]
    assert responses[409]["description"].splitlines() == [
        f"- `schedule_busy`: {CATALOG['schedule_busy'].en}",
        f"- `quiet_hours`: {CATALOG['quiet_hours'].en}",
    ]
    with pytest.raises(KeyError, match="no_such_code"):
        documented("no_such_code")


def test_routes_document_their_errors_from_the_catalog() -> None:
    spec = json.loads(render())
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) < 400 or response["description"] == "Validation Error":
                    continue  # a success, or FastAPI's own 422 on a route with no 422 of ours
                for line in response["description"].splitlines():
                    found = re.match(r"- `(\w+)`: ", line)
                    where = f"{method.upper()} {path} {status}"
                    assert found, f"{where}: not from the catalog: {line!r}"
                    assert CATALOG[found[1]].status == int(status), where
