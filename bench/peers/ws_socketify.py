"""The WebSocket bench app on socketify.py (uWebSockets, C++, through cffi): the same routes
as bench/peers/ws_tpd2py.py, compression off.

socketify is callback-based: no handler waits, so ``/idle`` is a socket with callbacks and
``/sub`` one subscribed to a topic (uWebSockets' pub/sub: ``app.publish`` frames once).
Run: ``python -m bench.peers.ws_socketify PORT``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from socketify import App, CompressOptions, OpCode

app = App()
counts = {"idle": 0}


def _echo_message(ws: Any, message: Any, opcode: Any) -> None:
    ws.send(message, opcode)


def _idle_open(ws: Any) -> None:
    counts["idle"] += 1


def _idle_close(ws: Any, code: int, message: Any) -> None:
    counts["idle"] -= 1


def _sub_open(ws: Any) -> None:
    ws.subscribe("room")


def _ignore(ws: Any, message: Any, opcode: Any) -> None:
    pass


def _behavior(**handlers: Any) -> dict[str, Any]:
    return {"compression": CompressOptions.DISABLED, "max_payload_length": 1 << 20,
            "idle_timeout": 960, **handlers}


async def _publish(res: Any, req: Any) -> None:
    text = (await res.get_data()).getvalue()
    app.publish("room", text, OpCode.TEXT)
    res.end("ok")


def _stats(res: Any, req: Any) -> None:
    res.write_header("Content-Type", "application/json")
    res.end(json.dumps({"idle": counts["idle"], "subscribers": app.num_subscribers("room")}))


app.ws("/echo", _behavior(message=_echo_message))
app.ws("/idle", _behavior(open=_idle_open, message=_ignore, close=_idle_close))
app.ws("/sub", _behavior(open=_sub_open, message=_ignore))
app.post("/publish", _publish)
app.get("/stats", _stats)
app.get("/hello", lambda res, req: res.end("Hello, World!"))

if __name__ == "__main__":
    app.listen(int(sys.argv[1]), None)
    app.run()
