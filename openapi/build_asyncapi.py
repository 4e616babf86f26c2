#!/usr/bin/env python3
"""Generate ``openapi/asyncapi.yaml``, the AsyncAPI 3.0 description of the MQTT interface.

The document is generated from ``wire/contract``, not written beside it: the payload schemas are
the JSON Schemas of the contract's pydantic models, with the descriptions written on those models
and their fields; enum values, channels, operations and messages take their prose from the
descriptors beside them in the contract (`EnumDocs`, `CHANNELS`, `OPERATIONS`, `MessageDocs`);
topic addresses, QoS, size limits and the shared-subscription group are the contract's constants,
and the examples (``asyncapi_examples.py``) are real, signed contract objects. What is left here is
the document's frame; its overview, the protocol as a whole, is ``asyncapi_overview.md`` (a
`string.Template`). After changing the contract, regenerate and commit the result::

    python -m openapi.build_asyncapi           # rewrite openapi/asyncapi.yaml
    python -m openapi.build_asyncapi --check   # exit 1 when openapi/asyncapi.yaml is stale

``tests/test_asyncapi.py`` fails while the committed document differs from what this produces.
"""

from __future__ import annotations

import argparse
import base64
import inspect
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from string import Template
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter

from gateway.deliveries.service import ACK_GRACE
from gateway.settings import Settings
from openapi.asyncapi_examples import (
    ACK_EXAMPLES,
    CITY,
    COMMAND_EXAMPLES,
    DISTRICT,
    EXAMPLE_KEY_ID,
    EXAMPLE_PUBLIC_KEY,
    LIVE_EXAMPLE_KEY,
    PRESENCE_EXAMPLES,
    SPEAKER,
    VILLAGE,
    example_acks,
    example_commands,
    example_live_frames,
    example_presence,
)
from openapi.asyncapi_yaml import dump
from wire import contract
from wire.contract import Category, FailReason, MessageDocs, ReceivedReason, RejectReason

# The tests read the published example keys through this module.
__all__ = ["EXAMPLE_KEY_ID", "EXAMPLE_PUBLIC_KEY", "LIVE_EXAMPLE_KEY", "main", "render"]

TARGET: Final = Path(__file__).resolve().with_name("asyncapi.yaml")
OVERVIEW: Final = Path(__file__).resolve().with_name("asyncapi_overview.md")
MQTT_BINDING: Final = "0.2.0"
SCHEMA_REF: Final = "#/components/schemas/"
HEADER: Final = (
    "# Generated from wire/contract by openapi/build_asyncapi.py: do not edit by hand.\n"
    "# Regenerate with `python -m openapi.build_asyncapi` after changing the contract.\n"
)

# The models that travel on the wire, in the order the document lists them.
PAYLOAD_MODELS: Final[tuple[type[BaseModel], ...]] = (
    contract.Command,
    contract.Ack,
    contract.Presence,
)
# Enums that no payload field references but that give meaning to Ack.reason.
REASON_ENUMS: Final[tuple[type[StrEnum], ...]] = (RejectReason, FailReason, ReceivedReason)
# Documents a speaker fetches over HTTP, listed with the payloads for a vendor's convenience.
HTTP_MODELS: Final[tuple[type[BaseModel], ...]] = (contract.KeyRing, contract.Provisioning)

SEGMENT_RULE: Final = "`[A-Za-z0-9_-]{1,64}`"
SEGMENT_EXAMPLES: Final[Mapping[str, str]] = {
    "city": CITY,
    "district": DISTRICT,
    "village": VILLAGE,
    "speaker": SPEAKER,
}

# --------------------------------------------------------------------------------------------
# Payload schemas. A field or enum value the contract does not describe still appears (its
# schema comes from the model), with a sentence saying it is not described yet, and the
# generator names it on stderr.

UNDESCRIBED: Final = "Not described in this document yet; its schema gives its type and limits."


def _undescribed(what: str) -> str:
    sys.stderr.write(f"build_asyncapi: {what} has no description (describe it in wire/contract)\n")
    return UNDESCRIBED


def _enum_description(enum: type[StrEnum]) -> str:
    docs = contract.ENUM_DOCS[enum]
    lines = [docs.intro, ""]
    for member in enum:
        extra = ""
        if enum is Category:
            extra = f" (default priority {contract.DEFAULT_PRIORITY[Category(member)]})"
        meaning = docs.meanings.get(member) or _undescribed(f"{enum.__name__}.{member.value}")
        lines.append(f"- `{member.value}`: {meaning}{extra}")
    return "\n".join(lines)


def _describe_model(name: str, schema: dict[str, Any]) -> None:
    """Give every property of a model's schema its field's description, last (after the type)."""
    for field, sub in schema["properties"].items():
        sub.pop("title", None)  # pydantic's "Broadcast Id" adds nothing to the field name
        sub["description"] = sub.pop("description", None) or _undescribed(f"{name}.{field}")


def _cross_field_rules(schemas: dict[str, Any]) -> None:
    """The models' `model_validator`s that JSON Schema can express, spelled out by hand.

    `tests/test_asyncapi.py` checks these against the models with valid and invalid payloads.
    """
    schemas["Scope"].update(
        {
            "if": {"properties": {"kind": {"const": "all"}}},
            "then": {"properties": {"ids": {"maxItems": 0}}},
            "else": {"required": ["ids"], "properties": {"ids": {"minItems": 1}}},
        }
    )
    schemas["AudioRef"]["oneOf"] = [
        {"required": ["data"], "properties": {"data": {"type": "string"}}},
        {"required": ["url"], "properties": {"url": {"type": "string"}}},
    ]
    schemas["Command"].update(
        {
            "if": {"required": ["type"], "properties": {"type": {"const": "play"}}},
            "then": {"required": ["audio"], "properties": {"audio": {"minItems": 1}}},
        }
    )


def payload_schemas() -> dict[str, Any]:
    """components/schemas: the payload models, the models and enums they use, the reasons."""
    schemas: dict[str, Any] = {}
    for model in (*PAYLOAD_MODELS, *HTTP_MODELS):
        generated = model.model_json_schema(ref_template=SCHEMA_REF + "{model}")
        defs: dict[str, Any] = generated.pop("$defs", {})
        for name, schema in [(model.__name__, generated), *defs.items()]:
            if name in schemas and schemas[name] != schema:
                raise SystemExit(f"two different schemas are called {name}")
            schemas.setdefault(name, schema)
    for enum in REASON_ENUMS:
        schemas[enum.__name__] = TypeAdapter(enum).json_schema()
    for name, schema in schemas.items():
        if "properties" in schema:
            _describe_model(name, schema)
        elif "enum" in schema:
            described = next((e for e in contract.ENUM_DOCS if e.__name__ == name), None)
            if described is None:
                schema.setdefault("description", _undescribed(f"the enum {name}"))
            else:
                schema["description"] = _enum_description(described)
    _cross_field_rules(schemas)
    schemas["LiveFrame"] = {
        "type": "string",
        "format": "binary",
        "minLength": contract.LIVE_HEADER_BYTES,
        "maxLength": contract.MAX_LIVE_FRAME_BYTES,
        "description": contract.LIVE_FRAME_DOC,
    }
    return schemas


def _wire(payload: bytes) -> Any:
    return json.loads(payload)


# --------------------------------------------------------------------------------------------
# The document


def address(topic: Callable[..., str]) -> str:
    """A contract topic function's topic with `{name}` in place of each argument."""
    names = list(inspect.signature(topic).parameters)
    rendered = topic(*(f"__{name}__" for name in names))
    for name in names:
        rendered = rendered.replace(f"__{name}__", f"{{{name}}}")
    return rendered


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(path)}


def _qos(
    qos: int, *, retain: bool | None = None, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    binding: dict[str, Any] = {"qos": int(qos)}
    if retain is not None:
        binding["retain"] = retain
    binding.update(extra or {})
    binding["bindingVersion"] = MQTT_BINDING
    return {"mqtt": binding}


def _size(size: int) -> str:
    return f"{size // 1024 // 1024} MiB" if size >= 1024 * 1024 else f"{size // 1024} KiB"


def _info_description() -> str:
    table = "\n".join(
        f"| `{address(channel.topic)}` | {channel.direction} | {int(channel.qos)} "
        f"| {channel.retained} |"
        for channel in contract.CHANNELS
    )
    return Template(OVERVIEW.read_text(encoding="utf-8")).substitute(
        segment_rule=SEGMENT_RULE,
        topic_table=table,
        client_id=f"{contract.SPEAKER_CLIENT_PREFIX}{{speaker}}",
        presence_qos=int(contract.PRESENCE_QOS),
        heartbeat_qos=int(contract.HEARTBEAT_QOS),
        ack_subscription=contract.ack_subscription(),
        presence_subscription=contract.presence_subscription(),
        share_group=contract.SHARE_GROUP,
        ack_topic=address(contract.ack_topic),
        skew_ms=contract.CLOCK_SKEW_MS,
        skew_s=contract.CLOCK_SKEW_MS // 1000,
        inline_audio_max=_size(Settings.model_fields["inline_audio_max_bytes"].default),
        heartbeat_s=f"{Settings.model_fields['heartbeat_s'].default:g}",
        catchup_grace_s=f"{Settings.model_fields['catchup_grace_s'].default:g}",
        ack_grace_s=int(ACK_GRACE.total_seconds()),
        max_command=_size(contract.MAX_COMMAND_BYTES),
        max_ack=_size(contract.MAX_ACK_BYTES),
        max_presence=_size(contract.MAX_PRESENCE_BYTES),
    )


def _message(
    name: str,
    docs: MessageDocs,
    *,
    payload: str,
    examples: Mapping[str, tuple[str, bytes]],
    content_type_property: bool,
    description: str | None = None,
) -> dict[str, Any]:
    binding: dict[str, Any] = {"contentType": "application/json"} if content_type_property else {}
    binding["bindingVersion"] = MQTT_BINDING
    return {
        "name": name,
        "title": docs.title,
        "summary": docs.summary,
        "description": description or docs.description,
        "contentType": "application/json",
        "payload": _ref("components", "schemas", payload),
        "bindings": {"mqtt": binding},
        "examples": [
            {"name": key, "summary": text, "payload": json.loads(body)}
            for key, (text, body) in examples.items()
        ],
    }


def _live_message(name: str, docs: MessageDocs) -> dict[str, Any]:
    """A live frame: binary, so its examples are the frame's bytes in base64."""
    return {
        "name": name,
        "title": docs.title,
        "summary": docs.summary,
        "description": docs.description,
        "contentType": "application/octet-stream",
        "payload": _ref("components", "schemas", "LiveFrame"),
        "bindings": {"mqtt": {"bindingVersion": MQTT_BINDING}},
        "examples": [
            {"name": key, "summary": text, "payload": base64.b64encode(body).decode("ascii")}
            for key, (text, body) in example_live_frames(name).items()
        ],
    }


def messages() -> dict[str, Any]:
    commands = example_commands()
    acks = example_acks()
    presence = example_presence()
    command_description = Template(contract.COMMAND_MESSAGE.description).substitute(
        example_key_id=EXAMPLE_KEY_ID,
        example_public_key=EXAMPLE_PUBLIC_KEY,
        example_signing_bytes=commands["play-inline"].signing_bytes().decode(),
    )
    return {
        "command": _message(
            "Command",
            contract.COMMAND_MESSAGE,
            description=command_description,
            payload="Command",
            content_type_property=True,
            examples={
                key: (text, contract.encode_command(commands[key]))
                for key, text in COMMAND_EXAMPLES.items()
            },
        ),
        "ack": _message(
            "Ack",
            contract.ACK_MESSAGE,
            payload="Ack",
            content_type_property=False,
            examples={
                status: (ACK_EXAMPLES[status], contract.encode_ack(ack))
                for status, ack in acks.items()
            },
        ),
        "liveAudio": _live_message("LiveAudio", contract.LIVE_AUDIO_MESSAGE),
        "liveControl": _live_message("LiveControl", contract.LIVE_CONTROL_MESSAGE),
        **{
            message_id: _message(
                "Presence",
                docs,
                payload="Presence",
                content_type_property=False,
                examples={key: (PRESENCE_EXAMPLES[key], contract.encode_presence(presence[key]))},
            )
            for message_id, (docs, key) in {
                "presenceBirth": (contract.PRESENCE_BIRTH_MESSAGE, "birth"),
                "presenceHeartbeat": (contract.PRESENCE_HEARTBEAT_MESSAGE, "heartbeat"),
                "presenceWill": (contract.PRESENCE_WILL_MESSAGE, "will"),
            }.items()
        },
    }


def channels() -> dict[str, Any]:
    own_speaker = {
        "speaker": {
            "description": contract.SEGMENT_DOCS["speaker"]
            + " Equal to the `speaker` field of the payload.",
            "examples": [SPEAKER],
            "location": "$message.payload#/speaker",
        }
    }
    result: dict[str, Any] = {}
    for channel in contract.CHANNELS:
        own = own_speaker if channel.id in ("acks", "presence") else {}
        names = list(inspect.signature(channel.topic).parameters)
        result[channel.id] = {
            "address": address(channel.topic),
            "title": channel.title,
            "description": channel.description,
            "parameters": {
                name: own.get(name) or _ref("components", "parameters", name) for name in names
            },
            "messages": {name: _ref("components", "messages", name) for name in channel.messages},
        }
    return result


# The Message Expiry Interval of a command, in the bindings of the operations that publish one.
EXPIRY_SCHEMA: Final[Mapping[str, Any]] = {
    "type": "integer",
    "minimum": 1,
    "maximum": 4294967295,
    "description": (
        "Seconds from publishing until `expires_at_ms`, rounded up, at least 1 "
        "(`message_expiry_seconds` in the contract)."
    ),
}


def operations() -> dict[str, Any]:
    by_id = {channel.id: channel for channel in contract.CHANNELS}
    result: dict[str, Any] = {}
    for op in contract.OPERATIONS:
        extra: dict[str, Any] = {}
        if op.expires:
            extra["messageExpiryInterval"] = dict(EXPIRY_SCHEMA)
        if op.shared_subscription is not None:
            extra["x-shared-subscription"] = op.shared_subscription
        names = op.messages or by_id[op.channel].messages
        result[op.id] = {
            "action": op.action,
            "channel": _ref("channels", op.channel),
            "title": op.title,
            "description": op.description,
            "tags": [{"name": op.role}],
            "bindings": _qos(op.qos, retain=op.retain, extra=extra),
            "messages": [_ref("channels", op.channel, "messages", name) for name in names],
        }
    return result


def _server(port: int, protocol: str, title: str, description: str) -> dict[str, Any]:
    return {
        "host": f"{{host}}:{port}",
        "protocol": protocol,
        "protocolVersion": "5.0",
        "title": title,
        "description": description,
        "variables": {"host": {"default": "localhost", "description": "The broker's host name."}},
        "security": [
            _ref("components", "securitySchemes", "speakerPassword"),
            _ref("components", "securitySchemes", "gatewayPassword"),
        ],
        "bindings": {"mqtt": {"cleanSession": False, "bindingVersion": MQTT_BINDING}},
    }


def document() -> dict[str, Any]:
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Maeul MQTT wire protocol",
            "version": str(contract.PROTOCOL_VERSION),
            "description": _info_description(),
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
            "tags": [
                {"name": "gateway", "description": "Performed by every gateway replica."},
                {"name": "speaker", "description": "Performed by every speaker."},
            ],
        },
        "defaultContentType": "application/json",
        "servers": {
            "broker": _server(
                1883,
                "mqtt",
                "MQTT 5 broker",
                "Plain MQTT (`mqtt://`, port 1883), for the gateway and tools on the private "
                "network.",
            ),
            "brokerTls": _server(
                8883,
                "secure-mqtt",
                "MQTT 5 broker over TLS",
                "MQTT over TLS (`mqtts://`, port 8883), for speakers on the internet.",
            ),
        },
        "channels": channels(),
        "operations": operations(),
        "components": {
            "schemas": payload_schemas(),
            "messages": messages(),
            "parameters": {
                name: {
                    "description": f"{text} Matches {SEGMENT_RULE}.",
                    "examples": [SEGMENT_EXAMPLES[name]],
                }
                for name, text in contract.SEGMENT_DOCS.items()
            },
            "securitySchemes": {
                "speakerPassword": {
                    "type": "userPassword",
                    "description": (
                        "One MQTT user per speaker, named by its speaker id. The broker's ACL "
                        "lets it read the group command topics and its own speaker topic, and "
                        "write only its own ack and presence topics."
                    ),
                },
                "gatewayPassword": {
                    "type": "userPassword",
                    "description": "The gateway's MQTT user: reads and writes the topic tree.",
                },
            },
        },
    }


def render() -> str:
    return HEADER + dump(document())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the committed file is stale"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            sys.stderr.write(f"{TARGET.name} is stale: run python -m openapi.build_asyncapi\n")
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
