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
