"""`maeul broker files` and `maeul broker template`: the MQTT broker's configuration files, from the
gateway or for the compose example."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from maeul.api import api_client, exit_for

broker_app = typer.Typer(help="MQTT broker files / 브로커 설정 파일", no_args_is_help=True)
console = Console(stderr=True)


@broker_app.command("files")
def broker_files(
    out: Annotated[Path, typer.Option(file_okay=False, help="Directory to write into")],
) -> None:
    """Write the broker's users as the gateway renders them: the dynamic security plugin's file
    (dynamic-security.json), and a password file (passwd) and ACL (acl) for a broker without it."""
    from maeul.broker_config import write_broker_file

    with api_client() as client:
        rendered = {}
        for name, path in (
            ("dynamic-security.json", "dynamic-security"),
            ("passwd", "passwd"),
            ("acl", "acl"),
        ):
            response = client.get(f"/api/v1/broker/{path}")
            if response.status_code != 200:
                raise exit_for(response)
            rendered[name] = response.text
    changed = [name for name, text in rendered.items() if write_broker_file(out / name, text)]
    users = sum(1 for line in rendered["passwd"].splitlines() if line)
    console.print(f"{out} 에 브로커 사용자 {users}명을 썼습니다. / wrote {users} broker users.")
    if changed:
        console.print(
            "바뀐 파일이 있습니다. 게이트웨이가 관리하는 브로커(dynamic security)는 이미 같은 "
            "상태이고, 파일은 브로커를 새로 시작할 때 씁니다. 비밀번호 파일을 쓰는 브로커에는 "
            "SIGHUP 을 보내 다시 읽히세요. / Changed: a broker the gateway manages holds this "
            "already (the file is for starting one afresh); send a broker using the password "
            "file SIGHUP to reload."
        )
    else:
        console.print("바뀐 것이 없습니다. / Nothing changed.")


# The broker accounts of the compose example (deploy/): the gateway's admin account, the gateway,
# and the health check, with their passwords from these environment variables.
TEMPLATE_ACCOUNTS = {
    "broker-admin": "MQTT_ADMIN_PASSWORD",
    "gateway": "MQTT_GATEWAY_PASSWORD",
    "healthcheck": "MQTT_HEALTHCHECK_PASSWORD",
}


@broker_app.command("template")
def broker_template(
    out: Annotated[Path, typer.Option(dir_okay=False, help="The file to write")],
) -> None:
    """Write the first dynamic-security.json of a broker provisioned by hand (the compose
    example): the gateway's admin account, the gateway and the health check, passwords from
    MQTT_ADMIN_PASSWORD, MQTT_GATEWAY_PASSWORD and MQTT_HEALTHCHECK_PASSWORD, hashed. The
    gateway adds every speaker when it connects."""
    from gateway.devicesec.dynsec import render_template
    from gateway.devicesec.mosquitto import hash_password
    from maeul.broker_config import write_broker_file

    hashes = {}
    for user, variable in TEMPLATE_ACCOUNTS.items():
        password = os.environ.get(variable, "")
        if not password:
            typer.echo(f"{variable} 가 비어 있습니다 / {variable} is not set", err=True)
            raise typer.Exit(2)
        hashes[user] = hash_password(password)
    write_broker_file(
        out,
        render_template(
            admin=("broker-admin", hashes["broker-admin"]),
            gateway=("gateway", hashes["gateway"]),
            healthcheck=("healthcheck", hashes["healthcheck"]),
        ),
    )
    console.print(f"{out} 을(를) 썼습니다 (소유자만 읽기). / wrote {out} (mode 0600).")


def _core_address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter("HOST:PORT, e.g. core.example.kr:8883")
    return host.strip("[]"), int(port)


@broker_app.command("edge-config")
def broker_edge_config(
    core: Annotated[str, typer.Option(help="The core broker, HOST:PORT")],
    name: Annotated[str, typer.Option(help="This edge's name ([A-Za-z0-9_-])")],
    out: Annotated[Path, typer.Option(dir_okay=False, help="The mosquitto.conf to write")],
    district: Annotated[
        list[str] | None,
        typer.Option(help="A district this edge serves (repeat); none: every district"),
    ] = None,
    city: Annotated[str | None, typer.Option(help="City code; none: every city")] = None,
    username: Annotated[
        str | None, typer.Option(help="The bridge's account on the core (default edge-NAME)")
    ] = None,
    port: Annotated[int, typer.Option(help="The edge's listener for speakers")] = 1883,
    core_cafile: Annotated[
        Path | None, typer.Option(help="CA of the core's certificate: the bridge uses TLS")
    ] = None,
    core_certfile: Annotated[Path | None, typer.Option(help="Client certificate")] = None,
    core_keyfile: Annotated[Path | None, typer.Option(help="Client certificate's key")] = None,
    password_file: Annotated[
        Path, typer.Option(help="Where the edge finds the speakers' password file")
    ] = Path("/mosquitto/config/passwd"),
    acl_file: Annotated[Path, typer.Option(help="Where the edge finds the speakers' ACL")] = Path(
        "/mosquitto/config/acl"
    ),
) -> None:
    """Write the mosquitto.conf of an edge broker bridged to the core: the speakers of its
    districts connect to it with their own accounts (the gateway's password file and ACL, from
    `maeul broker files`), and one MQTT 5 bridge carries commands down and acks and presence up.
    The bridge's password comes from MQTT_BRIDGE_PASSWORD. Prints the account to create on the
    core, for an acl_file and for the dynamic security plugin."""
    from maeul.broker_bridge import (
        Bridge,
        EdgeConfig,
        core_acl,
        core_dynsec_commands,
        render_edge_config,
    )
    from maeul.broker_config import write_broker_file

    host, core_port = _core_address(core)
    password = os.environ.get("MQTT_BRIDGE_PASSWORD", "")
    if not password:
        typer.echo(
            "MQTT_BRIDGE_PASSWORD 가 비어 있습니다 / MQTT_BRIDGE_PASSWORD is not set", err=True
        )
        raise typer.Exit(2)
    try:
        bridge = Bridge(
            name=name,
            core_host=host,
            core_port=core_port,
            city=city,
            districts=tuple(district or ()),
            username=username or f"edge-{name}",
            password=password,
            cafile=core_cafile,
            certfile=core_certfile,
            keyfile=core_keyfile,
        )
        text = render_edge_config(
            EdgeConfig(bridge=bridge, port=port, password_file=password_file, acl_file=acl_file)
        )
    except ValueError as exc:
        typer.echo(f"잘못된 값입니다 / invalid value: {exc}", err=True)
        raise typer.Exit(2) from None
    write_broker_file(out, text)
    console.print(f"{out} 을(를) 썼습니다 (소유자만 읽기). / wrote {out} (mode 0600).")
    console.print("코어 브로커에 이 브리지의 계정을 만드세요. / Create its account on the core:")
    typer.echo(f"# acl_file (and `mosquitto_passwd` for {bridge.username}):\n{core_acl(bridge)}")
    typer.echo("# dynamic security:\n" + "\n".join(core_dynsec_commands(bridge)))
