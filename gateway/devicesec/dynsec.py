"""Mosquitto's dynamic security plugin: the broker's clients and roles as the database says.

The plugin keeps the broker's users in a JSON file it reads at start and rewrites on every
change, and changes them at run time through commands published on ``$CONTROL``. This module
holds the formats only, no I/O: the state the database calls for (`BrokerState`), that state
as the plugin's JSON file, and the commands that turn what a broker holds into it.

Every speaker is bound to its own client id (`contract.speaker_client_id`): its password opens
the broker under that client id only, so no speaker can take over the session of the gateway or
of another speaker. Mosquitto 2.0.11's plugin does not substitute ``%u`` or ``%c`` in ACL
topics, so each speaker has a role of its own holding its topics: it reads the city's, its
district's, its village's and its own command topics and live streams, and writes its own ack
and presence topics. Anything no role grants is denied.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from gateway.devicesec import grants
from gateway.devicesec.mosquitto import SpeakerPlace, check_username, is_password_hash
from wire import contract

CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = "$CONTROL/dynamic-security/v1/response"
# Roles the gateway owns carry this prefix; a role without it is left alone.
ROLE_PREFIX: Final = "maeul-"
ADMIN_ROLE: Final = "maeul-admin"
GATEWAY_ROLE: Final = "maeul-gateway"
MONITOR_ROLE: Final = "maeul-monitor"
SPEAKER_ROLE_PREFIX: Final = "maeul-speaker-"

# (acltype, topic); every ACL the gateway writes allows.
Acl = tuple[str, str]
_SEND, _RECEIVE = "publishClientSend", "publishClientReceive"
_SUBSCRIBE, _UNSUBSCRIBE = "subscribePattern", "unsubscribePattern"


def speaker_role(code: str) -> str:
    return f"{SPEAKER_ROLE_PREFIX}{code}"


def _reads(topic: str) -> set[Acl]:
    return {(_SUBSCRIBE, topic), (_RECEIVE, topic), (_UNSUBSCRIBE, topic)}


def _acls(granted: Iterable[grants.Grant]) -> frozenset[Acl]:
    """The plugin's ACLs for grants: a read is subscribe, receive and unsubscribe; a write is
    send. A gateway's subscriptions are shared, and the broker checks them with their
    ``$share/<group>/`` prefix."""
    acls: set[Acl] = set()
    for grant in granted:
        if grant.access in ("read", "readwrite"):
            acls |= _reads(grant.topic)
        if grant.access in ("write", "readwrite"):
            acls.add((_SEND, grant.topic))
    return frozenset(acls)


def speaker_acls(city: str, place: SpeakerPlace) -> frozenset[Acl]:
    """What one speaker may read (its command topics and live streams) and write (its own ack
    and presence): its grants (`gateway.devicesec.grants`), under its own code."""
    where = grants.Place(district=place.district, village=place.village)
    return _acls(grants.grants_for(city, place.code, "speaker", where))


FIXED_ROLES: Final[Mapping[str, frozenset[Acl]]] = {
    ADMIN_ROLE: frozenset(
        {(_SEND, f"{CONTROL_TOPIC}/#"), *_reads(f"{CONTROL_TOPIC}/#"), *_reads(RESPONSE_TOPIC)}
    ),
    # The broker checks a shared subscription with its $share/<group>/ prefix.
    GATEWAY_ROLE: _acls(grants.gateway_grants())
    | {
        (_SUBSCRIBE, f"$share/+/{contract.TOPIC_ROOT}/#"),
        (_UNSUBSCRIBE, f"$share/+/{contract.TOPIC_ROOT}/#"),
    },
    MONITOR_ROLE: _acls(grants.monitor_grants()),
}


@dataclass(frozen=True)
class BrokerClient:
    """One broker user: its roles, the client id it is bound to (None: any), and its password
    as Mosquitto's ``$7$`` hash (None when only the broker knows it)."""

    username: str
    roles: tuple[str, ...]
    clientid: str | None = None
    password_hash: str | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BrokerState:
    """The users and the gateway's roles a broker should hold."""

    clients: Mapping[str, BrokerClient]
    roles: Mapping[str, frozenset[Acl]]


def build_state(
    city: str,
    *,
    admins: Mapping[str, str | None] | None = None,
    gateways: Mapping[str, str | None],
    monitors: Mapping[str, str | None],
    speakers: Iterable[tuple[SpeakerPlace, str | None]],
) -> BrokerState:
    """The state for user name -> password hash (None: not known here) of each kind."""
    clients: dict[str, BrokerClient] = {}
    roles: dict[str, frozenset[Acl]] = dict(FIXED_ROLES)
    for names, role in (
        (admins or {}, ADMIN_ROLE),
        (gateways, GATEWAY_ROLE),
        (monitors, MONITOR_ROLE),
    ):
        for name, hashed in names.items():
            # A monitor is bound to a client id of its own (so it can never take a speaker's
            # session); the admin and gateways connect with a fresh id each start.
            bound = grants.monitor_client_id(name) if role == MONITOR_ROLE else None
            clients.setdefault(name, BrokerClient(check_username(name), (role,), bound, hashed))
    for place, hashed in speakers:
        if place.code in clients:
            continue
        role = speaker_role(place.code)
        roles[role] = speaker_acls(city, place)
        clients[place.code] = BrokerClient(
            check_username(place.code), (role,), contract.speaker_client_id(place.code), hashed
        )
    return BrokerState(clients, roles)


# --- the plugin's JSON file -----------------------------------------------------------------


def hash_fields(hashed: str) -> dict[str, Any]:
    """A ``$7$`` hash as the plugin's file stores it: digest and salt in base64, iterations."""
    if not is_password_hash(hashed):
        raise ValueError("not a Mosquitto $7$ password hash")
    _, _, iterations, salt, digest = hashed.split("$")
    return {"password": digest, "salt": salt, "iterations": int(iterations)}


def to_hash(fields: Mapping[str, Any]) -> str:
    """The ``$7$`` hash of a client entry of the plugin's file (the inverse of hash_fields)."""
    salt = base64.b64encode(base64.b64decode(fields["salt"])).decode()
    return f"$7${int(fields['iterations'])}${salt}${fields['password']}"


def _acl_entries(acls: Iterable[Acl]) -> list[dict[str, Any]]:
    return [
        {"acltype": kind, "topic": topic, "priority": 0, "allow": True}
        for kind, topic in sorted(acls)
    ]


DEFAULT_ACCESS: Final = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": False,
}


def render_config(state: BrokerState) -> str:
    """The plugin's file for `state`; users whose hash is not known are left out."""
    clients = []
    for client in sorted(state.clients.values(), key=lambda c: c.username):
        if client.password_hash is None:
            continue
        entry: dict[str, Any] = {"username": client.username}
        if client.clientid is not None:
            entry["clientid"] = client.clientid
        entry.update(hash_fields(client.password_hash))
        entry["roles"] = [{"rolename": role} for role in client.roles]
        clients.append(entry)
    roles = [
        {"rolename": name, "acls": _acl_entries(acls)} for name, acls in sorted(state.roles.items())
    ]
    document = {
        "defaultACLAccess": DEFAULT_ACCESS,
        "clients": clients,
        "groups": [],
        "roles": roles,
    }
    return json.dumps(document, indent=1) + "\n"


# --- commands -------------------------------------------------------------------------------


def role_commands(
    name: str, want: frozenset[Acl], have: frozenset[Acl] | None
) -> list[dict[str, Any]]:
    """Commands that make role `name` hold exactly `want` (`have`: what it holds; None: no
    such role)."""
    if have is None:
        return [{"command": "createRole", "rolename": name, "acls": _acl_entries(want)}]
    return [
        *(
            {"command": "removeRoleACL", "rolename": name, "acltype": kind, "topic": topic}
            for kind, topic in sorted(have - want)
        ),
        *(
            {"command": "addRoleACL", "rolename": name, "acltype": kind, "topic": topic,
             "priority": 0, "allow": True}
            for kind, topic in sorted(want - have)
        ),
    ]  # fmt: skip


def modify_client(client: BrokerClient) -> dict[str, Any]:
    """Bind an existing user to its client id (or to none) and give it exactly its roles."""
    return {
        "command": "modifyClient",
        "username": client.username,
        "clientid": client.clientid or "",
        "roles": [{"rolename": role} for role in client.roles],
    }


def put_client(client: BrokerClient, password: str) -> list[dict[str, Any]]:
    """Create the user; or, when the broker answers that it exists, give it a new password,
    and its client id and roles (`BrokerAdmin.put` sends them one at a time, binding first)."""
    roles = [{"rolename": role} for role in client.roles]
    create: dict[str, Any] = {
        "command": "createClient",
        "username": client.username,
        "password": password,
        "roles": roles,
    }
    if client.clientid is not None:
        create["clientid"] = client.clientid
    return [
        create,
        {"command": "setClientPassword", "username": client.username, "password": password},
        modify_client(client),
    ]


def parse_clients(data: Mapping[str, Any]) -> dict[str, BrokerClient]:
    """The ``listClients`` (verbose) answer as clients, passwords unknown."""
    found = {}
    for entry in data.get("clients", []):
        name = entry["username"]
        found[name] = BrokerClient(
            name,
            tuple(r["rolename"] for r in entry.get("roles", [])),
            entry.get("clientid") or None,
        )
    return found


def parse_roles(data: Mapping[str, Any]) -> dict[str, frozenset[Acl]]:
    """The ``listRoles`` (verbose) answer as role name -> allowed ACLs; a denying ACL counts as
    one to remove (it shows with a ``!`` before its type)."""
    return {
        entry["rolename"]: frozenset(
            (acl["acltype"] if acl.get("allow", True) else f"!{acl['acltype']}", acl["topic"])
            for acl in entry.get("acls", [])
        )
        for entry in data.get("roles", [])
    }


def _ours(client: BrokerClient) -> bool:
    bound = (client.clientid or "").startswith(contract.SPEAKER_CLIENT_PREFIX)
    return bound or any(role.startswith(ROLE_PREFIX) for role in client.roles)


def changeable(client: BrokerClient) -> bool:
    """Whether the gateway may give this broker user a password or roles through the API: one
    it made (a speaker, a gateway or monitor account), never an admin account or a user made on
    the broker by hand."""
    return _ours(client) and ADMIN_ROLE not in client.roles


def reconcile_commands(
    want: BrokerState,
    clients: Mapping[str, BrokerClient],
    roles: Mapping[str, frozenset[Acl]],
    *,
    keep: Iterable[str] = (),
) -> tuple[list[dict[str, Any]], list[str]]:
    """The commands that make a broker holding `clients` and `roles` match `want`, and the users
    `want` has that the broker lacks (it can create them only with their password).

    Users the broker has and `want` has not are deleted, except those in `keep` and those that
    were never the gateway's (no role of its own, not bound to a speaker's client id: accounts
    an operator made by hand, such as a health check); roles with the gateway's prefix that
    `want` has not are deleted; every other role and user of the gateway's is made to match."""
    kept = set(keep) | {name for name, client in clients.items() if not _ours(client)}
    commands: list[dict[str, Any]] = []
    for name, acls in sorted(want.roles.items()):
        have = roles.get(name)
        commands += role_commands(name, acls, have)
    for name, client in sorted(clients.items()):
        if name in kept:
            continue
        wanted = want.clients.get(name)
        if wanted is None:
            commands.append({"command": "deleteClient", "username": name})
        elif (wanted.clientid, sorted(wanted.roles)) != (client.clientid, sorted(client.roles)):
            commands.append(modify_client(wanted))
    for name in sorted(roles):
        if name.startswith(ROLE_PREFIX) and name not in want.roles:
            commands.append({"command": "deleteRole", "rolename": name})
    missing = sorted(set(want.clients) - set(clients) - kept)
    return commands, missing


# A hand-made health check account: its role is not the gateway's, so reconciling leaves both.
HEALTHCHECK_ROLE: Final = "healthcheck"


def render_template(
    *, admin: tuple[str, str], gateway: tuple[str, str], healthcheck: tuple[str, str]
) -> str:
    """The first file of a broker provisioned by hand (user name, ``$7$`` hash each): the
    gateway's admin account, the gateway, and a health check reading ``$SYS``. The gateway adds
    the speakers (and the rest of the database's accounts) when it first connects."""
    clients = {
        admin[0]: BrokerClient(check_username(admin[0]), (ADMIN_ROLE,), None, admin[1]),
        gateway[0]: BrokerClient(check_username(gateway[0]), (GATEWAY_ROLE,), None, gateway[1]),
        healthcheck[0]: BrokerClient(
            check_username(healthcheck[0]),
            (HEALTHCHECK_ROLE,),
            grants.monitor_client_id(healthcheck[0]),
            healthcheck[1],
        ),
    }
    roles = {**FIXED_ROLES, HEALTHCHECK_ROLE: FIXED_ROLES[MONITOR_ROLE]}
    return render_config(BrokerState(clients, roles))
