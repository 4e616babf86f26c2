"""The ``heard`` ack (an indoor receiver's 들었어요) in the wire contract: documented with an
example that validates against the ack schema, signed over the documented lines, and verified
only with the receiver's own key, for its own command and time."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from tests.test_asyncapi import ASYNCAPI, DOC_URI, OPENAPI
from wire import contract
from wire.contract import AckStatus

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _example(doc: dict[str, Any]) -> dict[str, Any]:
    [heard] = [e for e in doc["components"]["messages"]["ack"]["examples"] if e["name"] == "heard"]
    payload: dict[str, Any] = heard["payload"]
    return payload


def _ack(**changes: Any) -> contract.Ack:
    fields: dict[str, Any] = {
        "command_id": "a" * 32,
        "broadcast_id": "b" * 32,
        "speaker": "home-r1",
        "status": AckStatus.HEARD,
        "at_ms": 1_800_000_000_000,
    }
    return contract.Ack(**{**fields, **changes})


def test_the_heard_example_is_a_valid_signed_ack(doc: dict[str, Any]) -> None:
    payload = _example(doc)
    registry = Registry().with_resource(DOC_URI, Resource(contents=doc, specification=DRAFT7))
    Draft7Validator({"$ref": f"{DOC_URI}#/components/schemas/Ack"}, registry=registry).validate(
        payload
    )
    ack = contract.decode_ack(json.dumps(payload).encode())
    assert ack.status is AckStatus.HEARD
    assert contract.verify_heard(ack, contract.receipt_public_key(KEY))
    assert "heard" in doc["components"]["schemas"]["AckStatus"]["enum"]


def test_the_signing_bytes_are_the_documented_lines() -> None:
    ack = _ack()
    assert (
        contract.heard_signing_bytes(
            command_id=ack.command_id,
            broadcast_id=ack.broadcast_id,
            speaker="home-r1",
            at_ms=ack.at_ms,
        )
        == "\n".join(["maeul-heard/v1", "a" * 32, "b" * 32, "home-r1", str(ack.at_ms)]).encode()
    )
    overview = (OPENAPI / "asyncapi_overview.md").read_text(encoding="utf-8")
    assert "`maeul-heard/v1`, `command_id`,\n`broadcast_id`, `speaker`, `at_ms`" in overview


def test_only_the_receivers_own_signature_over_its_own_fields_verifies() -> None:
    public = contract.receipt_public_key(KEY)
    signed = contract.sign_heard(_ack(), KEY)
    assert contract.verify_heard(signed, public)
    other = contract.new_receipt_key()[1]
    assert not contract.verify_heard(signed, other)
    for change in (
        {"at_ms": signed.at_ms + 1},
        {"command_id": "c" * 32},
        {"speaker": "home-r2"},
        {"status": AckStatus.PLAYED},
        {"receipt_sig": None},
    ):
        assert not contract.verify_heard(signed.model_copy(update=change), public), change
    # A played receipt's signature is no heard, and only a heard is signed as one.
    with pytest.raises(ValueError, match="only a heard"):
        contract.sign_heard(_ack(status=AckStatus.PLAYED), KEY)
