"""The chat demo: post a message in one browser, every open page shows it at once.

Routes (under ``prefix``, default ``/chat``):
- ``GET /chat``: the page (static, pre-encoded at import). Its script receives messages over
  Server-Sent Events (``?mode=sse``, the default) or long polling (``?mode=poll``), and posts
  with ``fetch``; without JavaScript the form posts and the page reloads.
- ``POST /chat/send``: form fields ``name`` and ``text``; publishes ``{"name", "text", "at"}``.
- ``GET /chat/poll?after=N``: ``tpd2py.comet.long_poll`` on the chat channel.
- ``GET /chat/events``: ``tpd2py.comet.event_stream`` on the chat channel.
- ``/chat/ws`` (``?mode=ws``): a WebSocket subscribed to the chat channel (the history, then
  each message, as ``{"id", "data"}`` text frames, with no greenlet held); the page sends
  ``{"name", "text"}`` on it instead of POSTing.
With ``TPD2PY_REDIS`` set (a socket path or host:port), the channel is a
``tpd2py.redis_channel.RedisChannel``: every worker of ``--workers N``, and every machine on the
same Redis, shares one chat (docs/redis.md).
Rules: messages are rendered by the browser with ``textContent``, never as HTML, so user text
cannot inject markup; names and texts are trimmed to fixed lengths. Each message is encoded to
JSON once, however many pages receive it.
"""

from __future__ import annotations

import json
import os
import time

from tpd2py import (
    App,
    Channel,
    HTTPError,
    Message,
    Request,
    Response,
    WebSocket,
    event_stream,
    get_hub,
    long_poll,
)

MAX_NAME = 40
MAX_TEXT = 500
HISTORY = 100  # messages a newly opened page shows

PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tpd2py chat</title>
<style>
body { font: 16px/1.4 system-ui, sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em; }
#messages { list-style: none; padding: 0; min-height: 10em; border: 1px solid #ccc; }
#messages li { padding: .2em .5em; border-bottom: 1px solid #eee; }
#messages b { margin-right: .4em; }
form { display: flex; gap: .5em; margin-top: 1em; }
#text { flex: 1; }
#status { color: #666; font-size: 90%; }
</style></head>
<body>
<h1>Chat</h1>
<p id="status" data-state="connecting">connecting&hellip;</p>
<ul id="messages"></ul>
<form id="send" method="post" action="__PREFIX__/send">
<input id="name" name="name" placeholder="your name" maxlength="40" required>
<input id="text" name="text" placeholder="say something" maxlength="500" autocomplete="off"
 required>
<button id="submit" type="submit">Send</button>
</form>
<p>Transport: <a href="?mode=sse">Server-Sent Events</a> &middot;
<a href="?mode=poll">long polling</a> &middot; <a href="?mode=ws">WebSocket</a> &middot;
<a href="/">home</a></p>
<script>
(function () {
  "use strict";
  var prefix = "__PREFIX__";
  var list = document.getElementById("messages");
  var status = document.getElementById("status");
  var form = document.getElementById("send");
  var nameInput = document.getElementById("name");
  var textInput = document.getElementById("text");
  var seen = {};
  var mode = new URLSearchParams(location.search).get("mode") ||
             (window.EventSource ? "sse" : "poll");

  function setStatus(state, text) { status.dataset.state = state; status.textContent = text; }

  function show(id, data) {
    if (seen[id]) { return; }
    seen[id] = true;
    var li = document.createElement("li");
    li.dataset.id = id;
    var who = document.createElement("b");
    who.textContent = data.name + ":";
    li.appendChild(who);
    li.appendChild(document.createTextNode(data.text));
    list.appendChild(li);
    li.scrollIntoView({block: "nearest"});
  }

  function pause(ms) { return new Promise(function (done) { setTimeout(done, ms); }); }

  function viaEvents() {
    var source = new EventSource(prefix + "/events");
    source.onopen = function () { setStatus("live", "connected (Server-Sent Events)"); };
    source.onmessage = function (e) { show(e.lastEventId, JSON.parse(e.data)); };
    source.onerror = function () { setStatus("connecting", "reconnecting\\u2026"); };
  }

  var socket = null;
  function viaSocket() {
    var scheme = location.protocol === "https:" ? "wss:" : "ws:";
    var ws = new WebSocket(scheme + "//" + location.host + prefix + "/ws");
    ws.onopen = function () { socket = ws; setStatus("live", "connected (WebSocket)"); };
    ws.onmessage = function (e) { var m = JSON.parse(e.data); show(String(m.id), m.data); };
    ws.onclose = function () {
      socket = null;
      setStatus("connecting", "reconnecting\\u2026");
      setTimeout(viaSocket, 1000);
    };
  }

  async function viaPolling() {
    var version = null;
    for (;;) {
      try {
        var url = prefix + "/poll" + (version === null ? "" : "?after=" + version);
        var response = await fetch(url, {cache: "no-store"});
        if (response.status === 200) {
          var update = await response.json();
          update.messages.forEach(function (m) { show(String(m.id), m.data); });
          version = update.version;
          setStatus("live", "connected (long polling)");
        } else if (response.status !== 204) {
          setStatus("connecting", "server said " + response.status + "; retrying");
          await pause(1000);
        }
      } catch (err) {
        setStatus("connecting", "reconnecting\\u2026");
        await pause(1000);
      }
    }
  }

  nameInput.value = localStorage.getItem("chat-name") || "";
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    localStorage.setItem("chat-name", nameInput.value);
    if (socket !== null) {
      socket.send(JSON.stringify({name: nameInput.value, text: textInput.value}));
      textInput.value = "";
      textInput.focus();
      return;
    }
    var body = new URLSearchParams(new FormData(form));
    fetch(prefix + "/send", {method: "POST", body: body,
                             headers: {"X-Requested-With": "fetch"}})
      .then(function (r) { if (r.ok) { textInput.value = ""; textInput.focus(); } });
  });

  if (mode === "poll") { viaPolling(); } else if (mode === "ws") { viaSocket(); }
  else { viaEvents(); }
})();
</script>
</body></html>
"""


def make_channel() -> Channel:
    """In this process, or shared through the Redis that ``TPD2PY_REDIS`` names."""
    address = os.environ.get("TPD2PY_REDIS")
    if address:
        from tpd2py.redis_channel import RedisChannel

        return RedisChannel(address, "chat", history=HISTORY)
    return Channel(history=HISTORY, name="chat")


def register(app: App, chat: Channel, prefix: str = "/chat") -> list[tuple[str, str]]:
    """Add the chat routes for ``chat`` to ``app``; returns the home-page links for them."""
    page = PAGE.replace(b"__PREFIX__", prefix.encode())

    @app.route(prefix)
    def chat_page(request: Request) -> Response:
        return Response(page, content_type="text/html; charset=utf-8")

    def publish(name: str, text: str) -> Message | None:
        name = " ".join(name.split())[:MAX_NAME] or "anonymous"
        text = " ".join(text.split())[:MAX_TEXT]
        if not text:
            return None
        return chat.publish({"name": name, "text": text, "at": int(time.time())})

    @app.route(prefix + "/send", methods=["POST"])
    def send(request: Request) -> Response | dict:
        form = request.form()
        message = publish(form.get("name", ""), form.get("text", ""))
        if message is None:
            raise HTTPError(400, "empty message\n")
        if request.header("x-requested-with") == "fetch":
            return {"version": message.version}
        return Response(b"", status=303, headers={"Location": prefix})

    @app.route(prefix + "/poll")
    def poll(request: Request) -> Response:
        return long_poll(request, chat)

    @app.route(prefix + "/events")
    def events(request: Request) -> Response:
        return event_stream(request, chat)

    @app.websocket(prefix + "/ws", max_message=4096)
    def socket(ws: WebSocket) -> None:
        def publish_from_socket(name: str, text: str) -> None:
            try:
                publish(name, text)
            except HTTPError:  # a RedisChannel's Redis is unreachable: try again later
                ws.close(1013, "cannot publish now, try again later")

        def received(data: str | bytes) -> None:
            try:
                fields = json.loads(data)
                name, text = str(fields["name"]), str(fields["text"])
            except (ValueError, KeyError, TypeError):
                ws.close(1003, "expected {name, text} JSON")
                return
            # on_message runs in the hub, which must not wait: a RedisChannel's publish waits
            # for Redis, so it runs in a greenlet of its own.
            get_hub().spawn(publish_from_socket, name, text)

        # The history, then every message; the handler returns and no greenlet waits.
        ws.subscribe(chat, after=0, on_message=received)

    return [(prefix, "Chat (Server-Sent Events)"),
            (prefix + "?mode=poll", "Chat (long polling)"),
            (prefix + "?mode=ws", "Chat (WebSocket)")]
