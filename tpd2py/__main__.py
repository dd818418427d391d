"""The command line: ``python -m tpd2py MODULE:APP [options]`` (also the ``tpd2py`` script)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from typing import IO

from .app import App
from .compress import Gzip
from .deploy import add_production_options, production_requested, run_production
from .http11 import Limits
from .hub import get_hub
from .server import Config, serve
from .static import StaticFiles
from .tls import TLSSettings


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (the current directory is importable, as with uvicorn)."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise SystemExit(f"tpd2py: give the app as MODULE:APP, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    app = getattr(module, attr or "app", None)
    if app is None:
        raise SystemExit(f"tpd2py: {module_name} has no attribute {attr or 'app'!r}")
    return app


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
    p = argparse.ArgumentParser(prog="tpd2py", description="Serve a tpd2py app.")
    p.add_argument("app", help="MODULE:APP, e.g. myapp:app")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--unix", metavar="PATH", help="listen on a Unix socket instead of TCP")
    p.add_argument("--access-log", metavar="FILE",
                   help="write a Common Log Format line per response ('-' for stdout)")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--header-timeout", type=float, default=d.header_timeout,
                   help="seconds to receive a whole request head (default %(default)s)")
    p.add_argument("--keepalive-timeout", type=float, default=d.keepalive_timeout,
                   help="seconds an idle keep-alive connection is kept (default %(default)s)")
    p.add_argument("--body-timeout", type=float, default=d.body_timeout)
    p.add_argument("--min-body-rate", type=float, default=d.min_body_rate,
                   help="bytes/second a request body must average (default %(default)s)")
    p.add_argument("--write-timeout", type=float, default=d.write_timeout)
    p.add_argument("--max-body-size", type=int, default=d.max_body_size)
    p.add_argument("--max-connections", type=int, default=d.max_connections)
    p.add_argument("--max-header-bytes", type=int, default=lim.max_header_bytes)
    p.add_argument("--max-headers", type=int, default=lim.max_headers)
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
    add_production_options(p)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
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
    if production_requested(args):
        def make_app() -> App:
            app = load_app(args.app)
            add_static_and_gzip(app, args.static, args.gzip, args.gzip_level)
            return app
        # The TLS settings are made where the listeners are served: in each worker (after the
        # fork: the master makes no hub), or here for one process.
        status = run_production(args, config, access_log, make_app, lambda: tls_settings(args))
        if access_log is not None:
            access_log.flush()
        raise SystemExit(status)
    app = load_app(args.app)
    add_static_and_gzip(app, args.static, args.gzip, args.gzip_level)
    settings = tls_settings(args)
    serve(app, host=args.host, port=args.port, unix=args.unix, config=config,
          access_log=access_log, transport=settings.wrap if settings is not None else None)
    if access_log is not None:
        access_log.flush()


if __name__ == "__main__":
    main()
