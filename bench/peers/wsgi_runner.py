"""Run a WSGI app from bench/peers/wsgi_hello.py on a server that has no CLI of its own.

Usage: python bench/peers/wsgi_runner.py {bjoern,meinheld} ATTRIBUTE --port PORT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.peers import wsgi_hello  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server", choices=["bjoern", "meinheld"])
    parser.add_argument("attribute", help="app or flask")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = getattr(wsgi_hello, args.attribute)
    if args.server == "bjoern":
        import bjoern

        bjoern.run(app, "127.0.0.1", args.port)
    else:
        import meinheld

        meinheld.server.listen(("127.0.0.1", args.port))
        meinheld.server.run(app)


if __name__ == "__main__":
    main()
