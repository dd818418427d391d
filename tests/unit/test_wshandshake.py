"""wshandshake as pure functions: the accept key, the refusals, subprotocols and the
permessage-deflate negotiation (RFC 7692 §7.1) as a table."""

from __future__ import annotations

import pytest

from tpd2py.errors import HTTPError
from tpd2py.wshandshake import Deflate, accept_key, handshake, negotiate_deflate

GOOD = {"upgrade": ["websocket"], "connection": ["Upgrade"],
        "sec-websocket-key": ["dGhlIHNhbXBsZSBub25jZQ=="], "sec-websocket-version": ["13"]}


def fields(**changes: list[str] | None) -> dict[str, list[str]]:
    out = dict(GOOD)
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def shake(headers: dict[str, list[str]], **kw: object) -> tuple[bytes, object, object]:
    return handshake("GET", "HTTP/1.1", lambda name: headers.get(name, []), **kw)  # type: ignore[arg-type]


def test_accept_key_is_rfc_6455s_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_the_101_head() -> None:
    head, protocol, deflate = shake(GOOD)
    assert head == (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
                    b"\r\n\r\n")
    assert protocol is None and deflate is None


REFUSALS = [
    (fields(upgrade=None), 426),
    (fields(sec_websocket_version=["13", "13"]), 426),
    (fields(sec_websocket_version=["7"]), 426),
    (fields(connection=["close"]), 400),
    (fields(sec_websocket_key=["a", "b"]), 400),
    (fields(sec_websocket_key=["dGhlIHNhbXBsZSBub25jZQ"]), 400),  # padding missing
    (fields(transfer_encoding=["chunked"]), 400),
    (fields(content_length=["5"]), 400),
]


@pytest.mark.parametrize(("headers", "status"), REFUSALS)
def test_refusals(headers: dict[str, list[str]], status: int) -> None:
    with pytest.raises(HTTPError) as e:
        shake(headers)
    assert e.value.status == status


def test_origins() -> None:
    with pytest.raises(HTTPError) as e:
        shake(GOOD, origins=("https://a.example",))
    assert e.value.status == 403
    assert shake(fields(origin=["https://a.example"]), origins=("https://a.example",))


def test_subprotocol_is_the_servers_first_choice_offered() -> None:
    headers = fields(sec_websocket_protocol=["chat, superchat", "json"])
    head, protocol, _ = shake(headers, subprotocols=("json", "chat"))
    assert protocol == "json" and b"Sec-WebSocket-Protocol: json\r\n" in head


DEFLATE = [
    ("permessage-deflate", Deflate()),
    ("permessage-deflate; client_max_window_bits", Deflate()),
    ("permessage-deflate; client_max_window_bits=10; server_max_window_bits=12",
     Deflate(True, 10, 12)),
    ("permessage-deflate; client_no_context_takeover", Deflate(client_takeover=False)),
    ("permessage-deflate; server_no_context_takeover", Deflate()),
    ("x-webkit-deflate-frame, permessage-deflate", Deflate()),
    # Declined offers (§7.1: not an error): bad values, unknown or repeated parameters.
    ("permessage-deflate; server_max_window_bits", None),
    ("permessage-deflate; server_max_window_bits=8", None),  # zlib has no raw 8-bit window
    ("permessage-deflate; client_max_window_bits=16", None),
    ("permessage-deflate; mystery=1", None),
    ("permessage-deflate; client_no_context_takeover=1", None),
    ("permessage-deflate; server_max_window_bits=10; server_max_window_bits=11", None),
    # The first acceptable offer wins.
    ("permessage-deflate; bogus, permessage-deflate; client_no_context_takeover",
     Deflate(client_takeover=False)),
]


@pytest.mark.parametrize(("offer", "expected"), DEFLATE, ids=[d[0] for d in DEFLATE])
def test_deflate_negotiation(offer: str, expected: Deflate | None) -> None:
    assert negotiate_deflate([offer]) == expected


def test_deflate_response_always_keeps_no_server_context() -> None:
    head, _, deflate = shake(fields(sec_websocket_extensions=[
        "permessage-deflate; client_max_window_bits=10; client_no_context_takeover"]))
    assert deflate == Deflate(False, 10, 15)
    assert (b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
            b"client_no_context_takeover; client_max_window_bits=10\r\n") in head
    assert shake(fields(sec_websocket_extensions=["permessage-deflate"]),
                 compression=False)[2] is None
