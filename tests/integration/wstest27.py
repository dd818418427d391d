"""Run the Autobahn test suite's ``wstest`` from a ``pip install --target DIR`` of
autobahntestsuite (Python 2.7): ``python2.7 wstest27.py DIR [wstest options]``.
``site.addsitedir`` makes the namespace packages (zope) of such a directory importable.
Used by test_autobahn.py through the WSTEST variable; Python 2 and 3 alike can read it."""

import site
import sys

site.addsitedir(sys.argv[1])
del sys.argv[1]
sys.argv[0] = "wstest"
from autobahntestsuite.wstest import run  # noqa: E402

run()
