"""Checks a server's answers to the six TechEmpower test types the way the benchmark's own
verifier does: required headers and content types, JSON shapes, the ``queries`` parameter's
clamping, the fortunes page (its rows, their sort order, escaping, UTF-8) and updates that
reach the database. Our own code; the rules are the benchmark's published requirements.

``verify(get, world=None)`` returns a list of problems (empty: all pass). ``get(path)`` returns
``(status, headers with lowercase names, body)``; ``world(ids)`` returns ``{id: randomnumber}``
read from the database (for the updates check; without it that check is skipped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

from bench.techempower.schema import ADDITIONAL, FORTUNES

Get = Callable[[str], tuple[int, dict[str, str], bytes]]

CONTENT_TYPES = {
    "json": r"application/json(; ?charset=(UTF|utf)-8)?",
    "html": r"text/html; ?charset=(UTF|utf)-8",
    "plaintext": r"text/plain(; ?charset=(UTF|utf)-8)?",
}
# queries=... -> how many rows the answer must have (the benchmark's cases, plus 20).
QUERY_CASES = [("2", 2), ("0", 1), ("foo", 1), ("501", 500), ("", 1), ("20", 20)]


def check_headers(path: str, status: int, headers: dict[str, str], kind: str) -> list[str]:
    problems = []
    if status != 200:
        problems.append(f"{path}: status {status}")
    for name in ("server", "date", "content-type"):
        if name not in headers:
            problems.append(f"{path}: no {name.title()} header")
    if "content-length" not in headers and "transfer-encoding" not in headers:
        problems.append(f"{path}: neither Content-Length nor Transfer-Encoding")
    if "date" in headers:
        try:
            parsedate_to_datetime(headers["date"])
        except (TypeError, ValueError):
            problems.append(f"{path}: bad Date {headers['date']!r}")
    ctype = headers.get("content-type", "")
    if not re.fullmatch(CONTENT_TYPES[kind], ctype):
        problems.append(f"{path}: Content-Type {ctype!r} is not {kind}")
    return problems


def check_world(path: str, obj: Any) -> list[str]:
    if type(obj) is not dict or set(obj) != {"id", "randomNumber"}:
        return [f"{path}: {obj!r} is not {{id, randomNumber}}"]
    if type(obj["id"]) is not int or not 1 <= obj["id"] <= 10_000:
        return [f"{path}: id {obj['id']!r} not an int in 1..10000"]
    if type(obj["randomNumber"]) is not int or not 1 <= obj["randomNumber"] <= 10_000:
        return [f"{path}: randomNumber {obj['randomNumber']!r} not an int in 1..10000"]
    return []


def _json(path: str, body: bytes) -> tuple[Any, list[str]]:
    try:
        return json.loads(body), []
    except ValueError as e:
        return None, [f"{path}: invalid JSON ({e}): {body[:80]!r}"]


class _Table(HTMLParser):
    """The fortunes page as (id, message) rows, plus whether its frame is right."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.tags: list[str] = []
        self.doctype = ""
        self.scripts = 0

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower()

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self.tags.append(tag)
        if tag == "script":
            self.scripts += 1
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None and self.rows:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def check_fortunes(path: str, body: bytes) -> list[str]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return [f"{path}: not UTF-8"]
    page = _Table()
    page.feed(text)
    problems = []
    if page.doctype != "doctype html":
        problems.append(f"{path}: doctype {page.doctype!r}")
    if page.scripts:
        problems.append(f"{path}: a <script> element: the messages were not escaped")
    for tag in ("html", "head", "title", "body", "table"):
        if tag not in page.tags:
            problems.append(f"{path}: no <{tag}>")
    expected = [["id", "message"]] + [[str(i), m]
                                      for i, m in sorted([*FORTUNES, ADDITIONAL],
                                                         key=lambda f: f[1])]
    if page.rows != expected:
        problems.append(f"{path}: rows {page.rows!r} are not {expected!r}")
    return problems


def verify(get: Get, world: Callable[[list[int]], dict[int, int]] | None = None) -> list[str]:
    """Every test type; the problems found (empty: all pass)."""
    problems: list[str] = []
    status, headers, body = get("/json")
    problems += check_headers("/json", status, headers, "json")
    obj, bad = _json("/json", body)
    problems += bad
    if not bad and obj != {"message": "Hello, World!"}:
        problems.append(f"/json: {obj!r}")
    status, headers, body = get("/plaintext")
    problems += check_headers("/plaintext", status, headers, "plaintext")
    if body != b"Hello, World!":
        problems.append(f"/plaintext: {body[:80]!r}")
    status, headers, body = get("/db")
    problems += check_headers("/db", status, headers, "json")
    obj, bad = _json("/db", body)
    problems += bad or check_world("/db", obj)
    for route in ("/queries", "/updates"):
        for value, length in QUERY_CASES:
            path = f"{route}?queries={value}"
            status, headers, body = get(path)
            problems += check_headers(path, status, headers, "json")
            obj, bad = _json(path, body)
            if bad:
                problems += bad
                continue
            if type(obj) is not list or len(obj) != length:
                problems.append(f"{path}: not a list of {length}: {body[:80]!r}")
                continue
            for item in obj[:10]:
                problems += check_world(path, item)
            if route == "/updates" and world is not None and not problems:
                stored = world([item["id"] for item in obj])
                wrong = [item for item in obj if stored.get(item["id"]) != item["randomNumber"]]
                if wrong:
                    problems.append(f"{path}: not written to the database: {wrong[:3]!r}")
    status, headers, body = get("/fortunes")
    problems += check_headers("/fortunes", status, headers, "html")
    problems += check_fortunes("/fortunes", body)
    return problems
