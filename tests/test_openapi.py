"""The committed OpenAPI document is the one the app serves."""

from __future__ import annotations

import json

from gateway.openapi_export import TARGET, render


def test_openapi_json_is_current() -> None:
    assert TARGET.exists(), "run `python -m gateway.openapi_export`"
    committed = json.loads(TARGET.read_text(encoding="utf-8"))
    assert committed == json.loads(render()), (
        "openapi/openapi.json is stale: run `python -m gateway.openapi_export`"
    )


def test_every_operation_has_an_id_and_errors_are_documented() -> None:
    spec = json.loads(render())
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation.get("operationId"), f"{method.upper()} {path} has no operationId"
