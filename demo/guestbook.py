"""The guestbook: a form with an optional photo upload, post/redirect/get, and a signed-cookie
session that remembers your name and how many times you signed.

Rules: entries live in memory (the last ``MAX_ENTRIES``); photos are kept only when they are
PNG, JPEG or GIF under ``MAX_PHOTO`` bytes. The session key comes from ``TPD2PY_DEMO_SECRET``
(else a random one: sessions end when the demo restarts). Never switches except while reading
a posted form (``read_form``).
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from html import escape
from typing import Any

from tpd2py import App, HTTPError, Request, Response
from tpd2py.forms import read_form
from tpd2py.sessions import Sessions
from tpd2py.urls import redirect

MAX_ENTRIES = 50
MAX_PHOTO = 512 * 1024
PHOTO_TYPES = {"image/png", "image/jpeg", "image/gif"}


def register(app: App, assets: str = "") -> list[tuple[str, str]]:
    """Add the guestbook's routes; ``assets`` is the head's shared stylesheet and icon links."""
    Sessions(app, os.environ.get("TPD2PY_DEMO_SECRET") or secrets.token_urlsafe(32))
    entries: deque[dict[str, Any]] = deque(maxlen=MAX_ENTRIES)
    photos: dict[int, tuple[str, bytes]] = {}
    counter = [0]

    @app.route("/guestbook", name="guestbook")
    def show(req: Request) -> str:
        session = req.session
        name = session.get("name", "")
        items = []
        for e in reversed(entries):
            photo = (f'<img src="{app.url_for("photo", entry=e["id"])}" alt="photo" '
                     f'height="48">' if e["id"] in photos else "")
            items.append(f'<li class="entry"><b>{escape(e["name"])}</b>: '
                         f'{escape(e["message"])} {photo}</li>')
        greeting = (f'<p id="me">Signed in as <b>{escape(name)}</b>, '
                    f'{session.get("posts", 0)} post(s). <form method="post" '
                    f'action="{app.url_for("forget")}" style="display:inline">'
                    f'<button id="forget">Forget me</button></form></p>' if name else "")
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>Guestbook</title>{assets}</head><body>"
            '<nav><a href="/">home</a></nav><h1>Guestbook</h1>' + greeting +
            f'<form method="post" action="{app.url_for("sign")}" '
            'enctype="multipart/form-data">'
            f'<input id="name" name="name" placeholder="name" required maxlength="40" '
            f'value="{escape(name)}"> '
            '<input id="message" name="message" placeholder="message" required '
            'maxlength="200"> <input id="photo" name="photo" type="file" accept="image/*"> '
            '<button id="sign">Sign</button></form>'
            f'<ul id="entries">{"".join(items)}</ul></body></html>'
        )

    @app.route("/guestbook", methods=["POST"], name="sign", max_body_size=MAX_PHOTO + 65536)
    def sign(req: Request) -> Response:
        with read_form(req, max_parts=3, max_field_size=1024, max_file_size=MAX_PHOTO) as form:
            name, message = form["name"].strip()[:40], form["message"].strip()[:200]
            if not name or not message:
                raise HTTPError(400, "400 Bad Request: a name and a message, please\n")
            counter[0] += 1
            entries.append({"id": counter[0], "name": name, "message": message})
            upload = form.file("photo")
            if upload is not None and upload.size and upload.content_type in PHOTO_TYPES:
                photos[counter[0]] = (upload.content_type, upload.read())
            for old in [k for k in photos if k <= counter[0] - MAX_ENTRIES]:
                del photos[old]
        req.session["name"] = name
        req.session["posts"] = req.session.get("posts", 0) + 1
        return redirect(app.url_for("guestbook"))  # 303: a reload does not post again

    @app.route("/guestbook/forget", methods=["POST"], name="forget")
    def forget(req: Request) -> Response:
        req.session.clear()
        return redirect(app.url_for("guestbook"))

    @app.route("/guestbook/photo/<int:entry>", name="photo")
    def photo(req: Request, entry: int) -> Response:
        found = photos.get(entry)
        if found is None:
            raise HTTPError(404)
        return Response(found[1], content_type=found[0],
                        headers={"X-Content-Type-Options": "nosniff"})

    return [("/guestbook", "Guestbook: a form, an upload and a signed-cookie session")]
