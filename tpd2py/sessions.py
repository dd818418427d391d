"""Signed-cookie sessions: a small dict kept by the browser, signed with HMAC-SHA256.

    sessions = Sessions(app, secret_keys=[os.environ["SESSION_KEY"]])

    @app.route("/")
    def index(req):
        req.session["visits"] = req.session.get("visits", 0) + 1
        ...

Rules:
- The cookie holds ``payload.issued.signature``: the JSON of the session (base64url), the
  Unix time it was signed, and HMAC-SHA256 over the cookie's name, the payload and the time,
  so a value cannot be moved to another cookie name. The data is signed, not encrypted: the
  user can read it (never put a secret in a session).
- Key rotation: the first key signs, every key verifies; put a new key first, keep the old
  one until the sessions it signed have expired (``max_age``), then drop it. Keys are at least
  32 bytes (``python -c "import secrets; print(secrets.token_urlsafe(32))"``).
- Expiry: a session signed more than ``max_age`` seconds ago (or in the future, past a minute
  of clock skew) is empty. A session is re-signed, and so renewed, when it changes.
- Tampering, a foreign or an expired cookie, bad base64 or JSON: the session is empty, never
  an error (and a debug line is logged). The server cannot revoke one session: a cookie that
  was valid stays valid until it expires or the keys change.
- Limits: JSON values only; the cookie must fit in ``MAX_COOKIE_BYTES`` (browsers keep about
  4 KB per cookie): a bigger session raises ValueError when it is saved. A change inside a
  nested value is not seen: assign the key again, or set ``session.modified = True``.
- Cost: nothing for a request that does not touch ``request.session`` beyond the app's hooks
  (one small object per request); the cookie is verified on first use, and written in an
  after-request hook only when the session changed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import time
from collections.abc import Iterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from .cookies import set_cookie_line
from .hooks import SESSIONS

if TYPE_CHECKING:
    from .app import App, Request, Response

__all__ = ["Sessions", "Session", "MAX_COOKIE_BYTES"]

log = logging.getLogger("tpd2py.sessions")

MAX_COOKIE_BYTES = 4000  # name, value and attributes: under browsers' ~4096 per cookie
MIN_KEY_BYTES = 32
CLOCK_SKEW = 60  # seconds a cookie's time may be ahead of ours (several servers)
_MAC_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Session(MutableMapping[str, Any]):
    """One request's session: a dict loaded from the cookie on first use."""

    __slots__ = ("_sessions", "_request", "_data", "modified", "spent")

    def __init__(self, sessions: Sessions, request: Request) -> None:
        self._sessions = sessions
        self._request = request
        self._data: dict[str, Any] | None = None
        self.modified = False
        # The handler's name once it has returned and the session was saved (hooks.py): a
        # streamed body may still read the session, and a change raises.
        self.spent: str | None = None

    def _changing(self) -> dict[str, Any]:
        if self.spent is not None:
            raise RuntimeError(
                f"request.session changed by the streamed body of {self.spent} after the "
                "handler returned: the session was saved then (its cookie goes in the "
                "response head, sent before the first chunk); change it in the handler, "
                "before returning the generator")
        return self.data

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._sessions.load(self._request)
        return self._data

    @property
    def loaded(self) -> bool:
        return self._data is not None

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._changing()[key] = value
        self.modified = True

    def __delitem__(self, key: str) -> None:
        del self._changing()[key]
        self.modified = True

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def clear(self) -> None:
        """Empty the session; the cookie is deleted with the response."""
        self._changing()
        self._data = {}
        self.modified = True

    def __repr__(self) -> str:
        return f"Session({self.data!r})"


class Sessions:
    """Signed-cookie sessions for ``app``: ``request.session`` in every handler."""

    def __init__(self, app: App, secret_keys: str | bytes | Sequence[str | bytes], *,
                 cookie_name: str = "session", max_age: int = 14 * 24 * 3600,
                 path: str = "/", domain: str | None = None, secure: bool = False,
                 httponly: bool = True, samesite: str = "Lax") -> None:
        if isinstance(secret_keys, (str, bytes)):
            secret_keys = [secret_keys]
        keys = [k.encode() if isinstance(k, str) else bytes(k) for k in secret_keys]
        if not keys:
            raise ValueError("Sessions needs at least one secret key")
        for k in keys:
            if len(k) < MIN_KEY_BYTES:
                raise ValueError(f"a session key has {len(k)} bytes; use at least "
                                 f"{MIN_KEY_BYTES} random ones (secrets.token_urlsafe(32))")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age <= 0:
            raise ValueError("max_age is a positive number of seconds")
        self.keys = keys
        self.cookie_name = cookie_name
        self.max_age = max_age
        self.cookie = {"path": path, "domain": domain, "secure": secure,
                       "httponly": httponly, "samesite": samesite}
        # Checked and formatted once: the attributes after the value, the same for every save
        # (the value itself is base64url, digits and dots: cookie-octets by construction).
        line = set_cookie_line(cookie_name, "x", max_age=max_age, **self.cookie)  # type: ignore[arg-type]
        self._set_cookie = b"Set-Cookie: %s=%%s%s\r\n" % (
            cookie_name.encode(), line[len(cookie_name) + 2:].replace(b"%", b"%%"))
        app.before_request(self._attach)
        app.after_request(self._save)

    def _mac(self, key: bytes, message: str) -> bytes:
        return hmac.digest(key, f"{self.cookie_name}|{message}".encode("ascii"), "sha256")

    # -- the cookie -----------------------------------------------------------------------------

    def encode(self, data: dict[str, Any], now: float | None = None) -> str:
        """The signed cookie value for ``data`` (raises ValueError if it does not fit)."""
        issued = int(time.time() if now is None else now)
        payload = _b64(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())
        message = f"{payload}.{issued}"
        value = f"{message}.{_b64(self._mac(self.keys[0], message))}"
        if len(value) + len(self.cookie_name) + 100 > MAX_COOKIE_BYTES:
            raise ValueError(f"session of {len(value)} bytes does not fit in a cookie "
                             f"({MAX_COOKIE_BYTES}): keep large data on the server")
        return value

    def decode(self, value: str, now: float | None = None) -> dict[str, Any]:
        """The session in a cookie value; {} if it is forged, damaged or expired."""
        try:
            payload, issued_text, signature = value.split(".")
            mac = _unb64(signature)
            message = f"{payload}.{issued_text}"
            if len(mac) != _MAC_BYTES or not any(
                    hmac.compare_digest(mac, self._mac(k, message)) for k in self.keys):
                log.debug("session cookie with a bad signature")
                return {}
            issued = int(issued_text)
            now = time.time() if now is None else now
            if issued + self.max_age < now or issued > now + CLOCK_SKEW:
                log.debug("expired session cookie")
                return {}
            data = json.loads(_unb64(payload))
        except (ValueError, binascii.Error, RecursionError):
            log.debug("damaged session cookie")
            return {}
        return data if isinstance(data, dict) else {}

    def load(self, request: Request) -> dict[str, Any]:
        value = request.cookies.get(self.cookie_name)
        return self.decode(value) if value else {}

    # -- the hooks ------------------------------------------------------------------------------

    def _attach(self, request: Request) -> None:
        SESSIONS[request] = Session(self, request)

    def _save(self, request: Request, response: Response) -> None:
        session = SESSIONS.get(request)  # None if an earlier before-hook answered
        if session is None or not session.modified:
            return
        if session.data:
            response.fields += self._set_cookie % self.encode(session.data).encode("ascii")
        elif request.cookies.get(self.cookie_name):
            response.delete_cookie(self.cookie_name, **self.cookie)
