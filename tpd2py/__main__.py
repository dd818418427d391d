"""The command line: ``python -m tpd2py MODULE:APP [options]`` (also the ``tpd2py`` script)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import IO, Any

from .app import App
from .http11 import Limits
from .server import Config, serve


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
                            ("--max-queue", args.max_queue),
                            ("--forwarded-allow-ips", args.forwarded_allow_ips)):
            if value:
                raise SystemExit(f"tpd2py: {flag} is for WSGI apps; {spec} is a tpd2py App")
        return app
    if not callable(app):
        raise SystemExit(f"tpd2py: {spec} is neither a tpd2py App nor a WSGI callable "
                         f"(it is a {type(app).__name__})")
    from .wsgi import WSGI

    trusted = [a.strip() for a in (args.forwarded_allow_ips or "").split(",") if a.strip()]
    return WSGI(app, threads=args.threads, max_queue=args.max_queue,
                root_path=args.root_path or "",
                trusted_proxies=trusted)


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    lim = Limits()
    p = argparse.ArgumentParser(prog="tpd2py", description="Serve a tpd2py or WSGI app.")
    p.add_argument("app", help="MODULE:APP, e.g. myapp:app (a tpd2py App or a WSGI callable)")
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
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help="WSGI apps: run the app in a pool of N threads (default: in the "
                        "connection's greenlet; see docs/wsgi.md)")
    p.add_argument("--max-queue", type=int, metavar="N",
                   help="WSGI apps with --threads: requests that may wait for a thread "
                        "(default 4 N); more are answered 503 with Retry-After")
    p.add_argument("--root-path", metavar="PATH",
                   help="WSGI apps: the path prefix the app is mounted under (SCRIPT_NAME)")
    p.add_argument("--forwarded-allow-ips", metavar="IPS",
                   help="WSGI apps: comma-separated proxy addresses whose X-Forwarded-Proto "
                        "sets wsgi.url_scheme")
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
    if args.threads < 0:
        raise SystemExit("tpd2py: --threads must not be negative")
    app = as_server_app(load_app(args.app), args.app, args)
    serve(app, host=args.host, port=args.port, unix=args.unix, config=config,
          access_log=access_log)
    if access_log is not None:
        access_log.flush()


if __name__ == "__main__":
    main()
