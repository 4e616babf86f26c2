"""The CLI's way to the gateway's API: an HTTP client with the saved credentials, and the exit a
refused request gives."""

from __future__ import annotations

import json

import httpx
import typer

from maeul import credentials


def api_client() -> httpx.Client:
    url, token = credentials.resolve()
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=httpx.Timeout(120.0)
    )


def exit_for(response: httpx.Response) -> typer.Exit:
    try:
        body = response.json()
    except ValueError:
        body = {"error": "http_error", "detail": response.text[:500]}
    typer.echo(json.dumps(body, ensure_ascii=False), err=True)
    return typer.Exit(2 if 400 <= response.status_code < 500 else 1)
