"""The command line's production options: ``--workers``, privileges, systemd sockets, proxies.

Rules: ``__main__`` only adds these options and calls ``run_production`` when one is used; plain
``python -m tpd2py app:app`` takes its old path. With ``--workers`` the master (workers.py)
binds; otherwise one Server binds in this process. Either way ``--umask`` applies before
binding, systemd's sockets (``LISTEN_FDS``) replace ``--host/--port/--unix``, and
``--user/--group`` apply right after binding.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import IO, Any

from . import systemd
from .app import App
from .context import Config
from .proxy import ProxyHeaders
from .proxyproto import PROXYProtocol
from .server import Server
from .stats import Board, Stats
from .workers import Master, WorkerOptions, bind_tcp, bind_unix, cpu_count, drop_privileges

__all__ = ["add_production_options", "production_requested", "run_production"]


def add_production_options(p: argparse.ArgumentParser) -> None:
    """Workers, privileges and proxies (docs/deploy.md)."""
    p.add_argument("--workers", default="0", metavar="N|auto",
                   help="fork N worker processes under a supervising master ('auto': one per "
                        "CPU; default: one process, no master)")
    p.add_argument("--reuse-port", action="store_true",
                   help="with --workers over TCP: one SO_REUSEPORT socket per worker instead "
                        "of one shared socket")
    p.add_argument("--max-requests", type=int, default=0, metavar="N",
                   help="with --workers: replace a worker after about N requests (0: never)")
    p.add_argument("--max-requests-jitter", type=int, default=0, metavar="J",
                   help="add 0..J to each worker's --max-requests")
    p.add_argument("--user", help="switch to this user after binding (needs root)")
    p.add_argument("--group", help="switch to this group after binding (needs root)")
    p.add_argument("--umask", type=lambda v: int(v, 8), metavar="OCTAL",
                   help="umask set before binding (the --unix socket's mode), e.g. 007")
    p.add_argument("--stats-path", metavar="PATH",
                   help="serve every worker's counters in Prometheus text format at PATH, "
                        "e.g. /_stats (off by default)")
    p.add_argument("--health-path", metavar="PATH",
                   help="answer 200 'ok' at PATH, e.g. /_health (off by default)")
    p.add_argument("--proxy-protocol", action="store_true",
                   help="every connection starts with a PROXY protocol v1/v2 header (HAProxy, "
                        "AWS NLB); its client address becomes request.peer")
    p.add_argument("--proxy-protocol-timeout", type=float, default=5.0, metavar="S",
                   help="seconds a PROXY header may take (default %(default)s)")
    p.add_argument("--proxy-headers", action="store_true",
                   help="believe X-Forwarded-For/-Proto/-Host and Forwarded from the peers in "
                        "--forwarded-allow-ips")
    p.add_argument("--forwarded-allow-ips", metavar="LIST",
                   help="comma-separated addresses or networks of trusted proxies, 'unix' for "
                        "unix-socket peers, '*' for all (implies --proxy-headers; default: "
                        "127.0.0.1,::1,unix)")


def production_requested(args: argparse.Namespace) -> bool:
    """Whether any option that run_production handles (and plain serve() does not) is used."""
    return bool(args.workers != "0" or args.user or args.group or args.umask is not None
                or args.proxy_headers or args.forwarded_allow_ips or args.proxy_protocol
                or args.stats_path or args.health_path
                or os.environ.get("LISTEN_FDS"))


def run_production(args: argparse.Namespace, config: Config, access_log: IO[str] | None,
                   make_app: Callable[[], App], make_tls: Callable[[], Any] | None = None
                   ) -> int:
    """Serve under a master with --workers, or in this process; return the exit status.
    ``make_tls`` (``__main__.tls_settings``) returns TLS settings or None; it runs where the
    listeners are served (in each worker, after the fork)."""
    def make_transport() -> Any:
        settings = make_tls() if make_tls is not None else None
        return settings.wrap if settings is not None else None

    if args.umask is not None:
        os.umask(args.umask)
    proxy = None
    if args.proxy_headers or args.forwarded_allow_ips:
        proxy = ProxyHeaders(args.forwarded_allow_ips)
        make_app = _with_proxy(make_app, proxy)
    try:
        workers = cpu_count() if args.workers == "auto" else int(args.workers)
    except ValueError:
        raise SystemExit(f"tpd2py: --workers takes a number or 'auto', not {args.workers!r}"
                         ) from None
    stats = None
    if args.stats_path or args.health_path:
        # Rows for each slot's worker, its successor during a reload, and one more.
        stats = Stats(args.stats_path, args.health_path, Board(max(1, 3 * workers)))
        make_app = _with_stats(make_app, stats)
    inherited = systemd.listen_fds()
    if workers <= 0:
        return _serve_here(args, config, access_log, make_app, make_transport(), inherited,
                           stats, _setup(args, proxy))
    shared, per_slot, unlink = inherited, [], []
    if not inherited and args.unix:
        shared = [bind_unix(args.unix)]
        unlink = [args.unix]
    elif not inherited and args.reuse_port:
        first = bind_tcp(args.host, args.port, reuse_port=True)
        port = first.getsockname()[1]  # with --port 0, every slot on the one chosen
        per_slot = [[first]] + [[bind_tcp(args.host, port, reuse_port=True)]
                                for _ in range(workers - 1)]
    elif not inherited:
        shared = [bind_tcp(args.host, args.port)]
    for sock in shared + [s for socks in per_slot for s in socks]:
        os.set_inheritable(sock.fileno(), True)
    drop_privileges(args.user, args.group, unlink)
    addr = [s.getsockname() for s in shared or per_slot[0]]
    print(f"tpd2py serving on {addr[0] if len(addr) == 1 else addr} with {workers} workers",
          file=sys.stderr, flush=True)
    options = WorkerOptions(make_app, workers, config, access_log, args.max_requests,
                            args.max_requests_jitter, _setup(args, proxy), stats,
                            make_transport)
    return Master(options, shared, per_slot, unlink).run()


def _preface(args: argparse.Namespace) -> Callable[[Server], None] | None:
    if not args.proxy_protocol:
        return None
    return PROXYProtocol(args.proxy_protocol_timeout).install


def _setup(args: argparse.Namespace, proxy: ProxyHeaders | None
           ) -> Callable[[Server], None] | None:
    """What each Server gets before it serves (and before stats count through its log): the
    PROXY protocol preface; the proxy's client in the access log."""
    preface = _preface(args)
    if preface is None and proxy is None:
        return None

    def setup(server: Server) -> None:
        if preface is not None:
            preface(server)
        if proxy is not None and server.ctx.access_log is not None:
            server.ctx.access_log.client = proxy.client_of

    return setup


def _with_stats(make_app: Callable[[], App], stats: Stats) -> Callable[[], App]:
    def make() -> App:
        app = make_app()
        if not isinstance(app, App):
            raise SystemExit("tpd2py: --stats-path and --health-path are for tpd2py Apps")
        stats.install(app)
        return app
    return make


def _with_proxy(make_app: Callable[[], App], proxy: ProxyHeaders) -> Callable[[], App]:
    def make() -> App:
        app = make_app()
        if isinstance(app, App):  # a WSGI app reads its proxies itself (trusted_proxies)
            app.wrap(proxy)  # last: outermost, so every other wrapper sees the client
        return app
    return make


def _serve_here(args: argparse.Namespace, config: Config, access_log: IO[str] | None,
                make_app: Callable[[], App], transport: Any, inherited: list,
                stats: Stats | None, setup: Callable[[Server], None] | None) -> int:
    """One process, as ``serve()`` does, with the production options applied."""
    server = Server(make_app(), config, access_log=access_log)
    if setup is not None:
        setup(server)
    if stats is not None:
        stats.attach(server)
    if inherited:
        for sock in inherited:
            server.adopt(sock, transport)
        addr: object = [s.getsockname() for s in inherited]
    elif args.unix:
        addr = server.listen_unix(args.unix, transport=transport)
    else:
        addr = server.listen_tcp(args.host, args.port, transport=transport)
    drop_privileges(args.user, args.group, [args.unix] if args.unix and not inherited else None)
    print(f"tpd2py serving on {addr}", file=sys.stderr, flush=True)
    interval = systemd.watchdog_interval()
    if interval:
        def ping() -> None:  # from the hub: a blocked hub stops pinging
            systemd.notify("WATCHDOG=1")
            server.hub.call_later(interval, ping)
        ping()
    systemd.notify("READY=1")
    server.serve_forever()
    systemd.notify("STOPPING=1")
    return 0
