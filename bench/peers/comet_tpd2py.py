"""The Comet bench app for tpd2py: the long-poll contract of bench/comet_bench.py.

``GET /hello`` (13 bytes), ``GET /poll?after=N`` (``tpd2py.comet.long_poll``: the newest
messages at once, else parks until the next publish), ``POST /publish`` (the body becomes one
message; wakes every waiter), ``GET /stats`` (``{"waiting": n, "version": v}``).
Run: ``python -m tpd2py bench.peers.comet_tpd2py:app --port PORT``. With ``TPD2PY_REDIS`` set
(a Redis address, e.g. a unix socket path) the channel is a ``tpd2py.redis_channel.RedisChannel``
shared by every worker (bench/redis_bench.py runs it with ``--workers 2``); ``/stats`` is then
this worker's figures only (the bench sums workers from ``/_stats``).
"""

from __future__ import annotations

import os

from tpd2py import App, Channel, Later, Request, Response, long_poll

TIMEOUT = 300.0  # longer than any bench phase: waiters never time out during a run

if os.environ.get("TPD2PY_REDIS"):
    from tpd2py.redis_channel import RedisChannel

    channel: Channel = RedisChannel(os.environ["TPD2PY_REDIS"], "bench", history=16)
else:
    channel = Channel(history=16, name="bench")
app = App()
HELLO = Response(b"Hello, World!", content_type=b"text/plain")


@app.route("/hello")
def hello(request: Request) -> Response:
    return HELLO


@app.route("/poll")
def poll(request: Request) -> Response | Later:
    return long_poll(request, channel, timeout=TIMEOUT)


@app.route("/publish", methods=["POST"])
def publish(request: Request) -> dict:
    return {"version": channel.publish(request.body().decode()).version}


@app.route("/stats")
def stats(request: Request) -> dict:
    return {"waiting": channel.waiting, "version": channel.version}
