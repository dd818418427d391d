"""The Comet bench app on a Redis-backed channel: bench/comet_tpd2py.py's contract, with the
channel shared by every worker through the Redis that ``TPD2PY_REDIS`` names.
Run: ``TPD2PY_REDIS=/path/redis.sock python -m tpd2py bench.peers.comet_redis:app --workers 2``.
"""

from __future__ import annotations

import os

from tpd2py import App, Request, Response, long_poll
from tpd2py.redis_channel import RedisChannel

TIMEOUT = 300.0  # longer than any bench phase: waiters never time out during a run

channel = RedisChannel(os.environ["TPD2PY_REDIS"], "bench", history=16)
app = App()
HELLO = Response(b"Hello, World!", content_type=b"text/plain")


@app.route("/hello")
def hello(request: Request) -> Response:
    return HELLO


@app.route("/poll")
def poll(request: Request) -> Response:
    return long_poll(request, channel, timeout=TIMEOUT)


@app.route("/publish", methods=["POST"])
def publish(request: Request) -> dict:
    return {"version": channel.publish(request.body().decode()).version}


@app.route("/stats")
def stats(request: Request) -> dict:
    """This worker's figures only (the bench sums workers from /_stats)."""
    return {"waiting": channel.waiting, "version": channel.version}
