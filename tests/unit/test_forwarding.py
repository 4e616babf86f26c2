"""Whose address a request has: the peer, or the client a trusted proxy names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from starlette.requests import Request

from gateway.forwarding import client_address, parse_networks
from gateway.serving import server_options
from gateway.settings import Settings

PROXIES = parse_networks("10.0.0.0/8, 192.0.2.1")


def _settings(**values: str) -> Settings:
    return Settings(environment="development", **values)


def _request(peer: str, *headers: tuple[str, str]) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
            "client": (peer, 5000),
        }
    )


def test_an_untrusted_peer_is_the_client_whatever_it_says() -> None:
    spoofed = _request("198.51.100.9", ("X-Forwarded-For", "203.0.113.66"))
    assert client_address(spoofed, PROXIES) == "198.51.100.9"
    assert client_address(spoofed, ()) == "198.51.100.9", "no proxy configured: trust none"
    standard = _request("198.51.100.9", ("Forwarded", "for=203.0.113.66"))
    assert client_address(standard, PROXIES) == "198.51.100.9"


def test_behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() -> None:
    # The client wrote the first entry itself; two trusted proxies appended the rest.
    chained = _request(
        "10.0.0.2",
        ("X-Forwarded-For", "203.0.113.66, 198.51.100.7"),
        ("X-Forwarded-For", "10.1.1.1"),
    )
    assert client_address(chained, PROXIES) == "198.51.100.7"
    assert client_address(_request("192.0.2.1"), PROXIES) == "192.0.2.1", "no header: the peer"


def test_a_chain_of_trusted_hops_only_names_the_left_most() -> None:
    inside = _request("10.0.0.2", ("X-Forwarded-For", "10.9.9.9:4000, 10.1.1.1"))
    assert client_address(inside, PROXIES) == "10.9.9.9"


def test_forwarded_is_read_when_no_x_forwarded_for_is_sent() -> None:
    standard = _request(
        "10.0.0.2", ("Forwarded", 'for=203.0.113.66, for="[2001:db8::7]:4711";proto=https')
    )
    assert client_address(standard, PROXIES) == "2001:db8::7"
    both = _request(
        "10.0.0.2", ("Forwarded", "for=203.0.113.66"), ("X-Forwarded-For", "198.51.100.7")
    )
    assert client_address(both, PROXIES) == "198.51.100.7"


def test_an_obfuscated_hop_leaves_the_last_address_known() -> None:
    hidden = _request("10.0.0.2", ("Forwarded", "for=_hidden, for=10.1.1.1"))
    assert client_address(hidden, PROXIES) == "10.1.1.1"
    garbage = _request("10.0.0.2", ("X-Forwarded-For", "not-an-address"))
    assert client_address(garbage, PROXIES) == "10.0.0.2"


def test_trusted_proxies_are_checked_when_the_settings_are_read() -> None:
    with pytest.raises(ValidationError, match="not an IP address or network"):
        _settings(trusted_proxies="10.0.0.0/8, nginx")
    assert _settings(trusted_proxies=" 10.0.0.0/8 ,").trusted_networks == parse_networks(
        "10.0.0.0/8"
    )


def test_uvicorn_trusts_the_same_proxies_or_none() -> None:
    none = server_options(_settings())
    assert none["proxy_headers"] is False
    assert none["timeout_graceful_shutdown"] == 10.0
    some = server_options(_settings(trusted_proxies="10.0.0.0/8,192.0.2.1"))
    assert some["proxy_headers"] is True
    assert some["forwarded_allow_ips"] == "10.0.0.0/8,192.0.2.1/32"
