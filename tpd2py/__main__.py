"""The command line: ``python -m tpd2py MODULE:APP [options]`` (also the ``tpd2py`` script)."""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
from typing import IO, Any

from . import __version__
from .app import App
from .compress import Gzip
from .deploy import add_production_options, production_requested, run_production
from .http11 import Limits
from .hub import get_hub
from .proxy import DEFAULT_TRUSTED
from .server import Config, serve
from .static import StaticFiles
from .tls import TLSSettings


def load_app(spec: str) -> Any:
    """Import ``module:attribute`` (the current directory is importable, as with uvicorn)."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise SystemExit(f"tpd2py: give the app as MODULE:APP, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name and not module_name.startswith(f"{e.name}."):
            raise  # the app's own import failed: its traceback says where
        raise SystemExit(f"tpd2py: no module named {module_name!r}") from None
    # Without a name: "app", else "application" (the name Django's wsgi.py and gunicorn use).
    for name in [attr] if attr else ["app", "application"]:
        app = getattr(module, name, None)
        if app is not None:
            return app
    raise SystemExit(f"tpd2py: {module_name} has no attribute {attr or 'app'!r}")


def as_server_app(app: Any, spec: str, args: argparse.Namespace) -> Any:
    """A tpd2py App as it is; any other callable as a WSGI app; else a one-line error."""
    if isinstance(app, App):
        for flag, value in (("--threads", args.threads), ("--root-path", args.root_path),
                            ("--max-queue", args.max_queue)):
            if value:
                raise SystemExit(f"tpd2py: {flag} is for WSGI apps; {spec} is a tpd2py App")
        return app
    if not callable(app):
        raise SystemExit(f"tpd2py: {spec} is neither a tpd2py App nor a WSGI callable "
                         f"(it is a {type(app).__name__})")
    from .wsgi import WSGI

    # The same proxies as a tpd2py App's (deploy's --proxy-headers: loopback by default).
    spec = args.forwarded_allow_ips or (DEFAULT_TRUSTED if args.proxy_headers else "")
    trusted = [a.strip() for a in spec.split(",") if a.strip()]
    return WSGI(app, threads=args.threads, max_queue=args.max_queue,
                root_path=args.root_path or "",
                trusted_proxies=trusted)


def add_static_and_gzip(app: App, mounts: list[str], gzip: bool, level: int) -> None:
    """``--static PREFIX=DIR`` mounts and ``--gzip``; a bad mount is a one-line error."""
    for spec in mounts:
        prefix, eq, folder = spec.partition("=")
        if not eq or not prefix.startswith("/") or not folder:
            raise SystemExit(f"tpd2py: --static takes PREFIX=DIR, e.g. /static=public, "
                             f"not {spec!r}")
        try:
            app.mount(prefix, StaticFiles(folder, gzip=gzip, gzip_level=level))
        except (OSError, ValueError) as e:
            raise SystemExit(f"tpd2py: --static {spec}: {e}") from None
    if gzip:
        app.wrap(Gzip(level=level))


def tls_settings(args: argparse.Namespace) -> TLSSettings | None:
    """``--certfile`` and friends; SIGHUP reloads the certificate files (for a renewer): new
    handshakes use the new ones, live connections keep theirs. Bad files: a one-line error."""
    if not args.certfile:
        for option in ("keyfile", "keyfile_password", "ca_certs", "ciphers", "sni"):
            if getattr(args, option):
                raise SystemExit(f"tpd2py: --{option.replace('_', '-')} needs --certfile")
        return None
    sni: dict[str, tuple[str, str | None]] = {}
    for spec in args.sni:
        host, eq, files = spec.partition("=")
        cert, _, key = files.partition(",")
        if not eq or not host or not cert:
            raise SystemExit(f"tpd2py: --sni takes HOST=CERT[,KEY], not {spec!r}")
        sni[host] = (cert, key or None)
    try:
        settings = TLSSettings(args.certfile, args.keyfile, args.keyfile_password,
                               args.ca_certs, args.client_cert, args.ciphers, sni=sni)
    except (OSError, ValueError) as e:
        raise SystemExit(f"tpd2py: TLS: {e}") from None
    hub = get_hub()

    def reload() -> None:
        try:
            settings.reload()
            logging.getLogger("tpd2py.tls").warning("TLS certificates reloaded")
        except (OSError, ValueError) as e:
            logging.getLogger("tpd2py.tls").error("TLS reload failed, keeping the old "
                                                  "certificates: %s", e)

    signal.signal(signal.SIGHUP, lambda signum, frame: hub.call_soon(reload))
    return settings


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    lim = Limits()
    p = argparse.ArgumentParser(prog="tpd2py", description="Serve a tpd2py or WSGI app.")
    p.add_argument("app", help="MODULE:APP, e.g. myapp:app (a tpd2py App or a WSGI callable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default %(default)s)")
    p.add_argument("--unix", metavar="PATH", help="listen on a Unix socket instead of TCP")
    p.add_argument("--access-log", metavar="FILE",
                   help="write a Common Log Format line per response ('-' for stdout)")
    p.add_argument("--log-level", default="warning", type=str.lower,
                   choices=["debug", "info", "warning", "error", "critical"],
                   help="(default %(default)s)")
    p.add_argument("--header-timeout", type=float, default=d.header_timeout,
                   help="seconds to receive a whole request head (default %(default)s)")
    p.add_argument("--keepalive-timeout", type=float, default=d.keepalive_timeout,
                   help="seconds an idle keep-alive connection is kept (default %(default)s)")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout,
                   help="seconds a request body read may stall (default %(default)s)")
    p.add_argument("--min-body-rate", type=float, default=d.min_body_rate,
                   help="bytes/second a request body must average (default %(default)s)")
    p.add_argument("--write-timeout", type=float, default=d.write_timeout,
                   help="seconds a response write may stall (default %(default)s)")
    p.add_argument("--max-body-size", type=int, default=d.max_body_size,
                   help="bytes of a request body; a route may set its own (default %(default)s)")
    p.add_argument("--max-connections", type=int, default=d.max_connections,
                   help="open connections at most (default %(default)s)")
    p.add_argument("--max-header-bytes", type=int, default=lim.max_header_bytes,
                   help="bytes of a request head (default %(default)s)")
    p.add_argument("--max-headers", type=int, default=lim.max_headers,
                   help="header fields of a request (default %(default)s)")
    p.add_argument("--no-head-cache", action="store_true",
                   help="parse every request head, even one identical to an earlier head")
    p.add_argument("--grace", type=float, default=d.grace,
                   help="seconds in-flight requests get after SIGTERM (default %(default)s)")
    p.add_argument("--static", metavar="PREFIX=DIR", action="append", default=[],
                   help="serve the files under DIR at URL PREFIX (repeatable), e.g. "
                        "/static=public")
    p.add_argument("--gzip", action="store_true",
                   help="compress responses (and small static files) for clients that accept "
                        "gzip")
    p.add_argument("--gzip-level", type=int, default=6, choices=range(1, 10), metavar="1..9")
    tls = p.add_argument_group("HTTPS", "with --certfile the listener speaks TLS (docs/tls.md)")
    tls.add_argument("--certfile", help="PEM certificate chain (the server's first)")
    tls.add_argument("--keyfile", help="PEM private key (default: in --certfile)")
    tls.add_argument("--keyfile-password", help="password of an encrypted --keyfile")
    tls.add_argument("--ca-certs", help="PEM CA certificates that client certificates must "
                                        "chain to")
    tls.add_argument("--client-cert", choices=["none", "optional", "required"], default="none",
                     help="ask for a client certificate (mutual TLS; default %(default)s)")
    tls.add_argument("--ciphers", help="OpenSSL cipher list for TLS 1.2")
    tls.add_argument("--sni", metavar="HOST=CERT[,KEY]", action="append", default=[],
                     help="another certificate, for clients asking for HOST (repeatable)")
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="WSGI apps: run the app in a pool of N threads (default: in the "
                        "connection's greenlet; see docs/wsgi.md)")
    p.add_argument("--max-queue", type=int, metavar="N",
                   help="WSGI apps with --threads: requests that may wait for a thread "
                        "(default 4 N); more are answered 503 with Retry-After")
    p.add_argument("--root-path", metavar="PATH",
                   help="WSGI apps: the path prefix the app is mounted under (SCRIPT_NAME)")
    p.add_argument("--debug", action="store_true",
                   help="show handler tracebacks in the browser (development only, never in "
                        "production)")
    p.add_argument("--reload", action="store_true",
                   help="restart the server when a .py file under the current directory "
                        "changes (development only; uses watchfiles when installed)")
    p.add_argument("--version", action="version", version=f"tpd2py {__version__}")
    add_production_options(p)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.reload:
        from .reload import run_with_reload

        argv = sys.argv[1:] if argv is None else argv
        raise SystemExit(run_with_reload([a for a in argv if a != "--reload"]))
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = Limits()
    limits.max_header_bytes = args.max_header_bytes
    limits.max_headers = args.max_headers
    config = Config(
        header_timeout=args.header_timeout, keepalive_timeout=args.keepalive_timeout,
        body_timeout=args.body_timeout, min_body_rate=args.min_body_rate,
        write_timeout=args.write_timeout, max_body_size=args.max_body_size,
        max_connections=args.max_connections, grace=args.grace, limits=limits,
        head_cache=not args.no_head_cache,
    )
    access_log: IO[str] | None = None
    if args.access_log == "-":
        access_log = sys.stdout
    elif args.access_log:
        access_log = open(args.access_log, "a", buffering=65536)  # noqa: SIM115
    if args.threads < 0:
        raise SystemExit("tpd2py: --threads must not be negative")

    def make_app() -> Any:
        app = as_server_app(load_app(args.app), args.app, args)
        if isinstance(app, App):
            add_static_and_gzip(app, args.static, args.gzip, args.gzip_level)
        elif args.static or args.gzip:
            raise SystemExit("tpd2py: --static and --gzip are for tpd2py Apps; a WSGI app "
                             "serves its own files")
        if args.debug:  # here, so that the workers' apps get it too
            if not isinstance(app, App):
                raise SystemExit("tpd2py: --debug is for tpd2py Apps (a WSGI framework has "
                                 "its own)")
            app.debug = True
        return app

    if production_requested(args):
        # The TLS settings are made where the listeners are served: in each worker (after the
        # fork: the master makes no hub), or here for one process.
        status = run_production(args, config, access_log, make_app, lambda: tls_settings(args))
        if access_log is not None:
            access_log.flush()
        raise SystemExit(status)
    app = make_app()
    settings = tls_settings(args)

    def ready(address: Any) -> None:
        if args.unix:
            where = f"unix:{address}"
        else:
            host, port = address[:2]
            scheme = "https" if settings is not None else "http"
            where = f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
        print(f"tpd2py serving on {where}", file=sys.stderr, flush=True)
        if args.debug:
            print("tpd2py: --debug shows tracebacks to anyone who can reach this server: "
                  "never use it in production", file=sys.stderr, flush=True)

    try:
        serve(app, host=args.host, port=args.port, unix=args.unix, config=config,
              access_log=access_log, ready=ready,
              transport=settings.wrap if settings is not None else None)
    except OSError as e:
        if e.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        where = args.unix or f"{args.host}:{args.port}"
        raise SystemExit(f"tpd2py: cannot listen on {where}: {e.strerror}") from None
    if access_log is not None:
        access_log.flush()


if __name__ == "__main__":
    main()
