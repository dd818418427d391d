"""The memory floor of a parked greenlet on this runtime: what a WebSocket handler waiting in
``for message in ws`` cannot cost less than, whatever tpd2py does above it.

Usage: ``python bench/greenlet_floor.py [--count 10000]`` (no server; a few seconds; run it
under the bench lock for figures).

For each variant, ``--count`` greenlets are started in a fresh subprocess and each switches
back to the main greenlet at once, then stays switched out; per greenlet we report:
- RSS: the process's resident set growth over the count (what ws_bench.py measures);
- traced: bytes from Python's allocators (tracemalloc, in a second run): the greenlet object,
  greenlet's C++ state for it and its saved C stack (greenlet copies the part of the C stack
  the greenlet used to the heap, with PyMem, when it switches out);
- untraced = RSS - traced: CPython 3.11 keeps frames in per-thread "data stack" chunks of
  16 KiB (``_PyObject_VirtualAlloc``: the object arena allocator's mmap, not traced), and
  greenlet gives every greenlet its own chunk once it runs Python code: its first page (4 KiB)
  is touched, the rest is only reserved;
- virtual: the process's VmSize growth (the 16 KiB chunk, when there is one).
Variants: ``c-run`` (run is a C callable: no Python frame, so no data-stack chunk);
``depth-1`` (a Python function that switches); ``depth-6`` (six nested Python calls, all
inlined by the interpreter: one C eval frame); ``depth-6+next`` (the same, through a Python
``__next__`` as in ``for message in ws``: the loop re-enters the C eval loop once more, what a
tpd2py handler parked in ``for message in ws`` has: _guarded, _run, handler, __next__, receive,
_park, hub.park).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

VARIANTS = ("c-run", "depth-1", "depth-6", "depth-6+next")

CHILD = r'''
import gc, json, sys, tracemalloc
from greenlet import getcurrent, greenlet

variant, count, trace = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
main = getcurrent()

def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def vm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1])

class Messages:
    def __iter__(self):
        return self

    def __next__(self):
        return nest(3)

def park():
    main.switch()

def nest(n):
    if n:
        nest(n - 1)
    else:
        main.switch()

def handler():
    for _ in Messages():  # handler, __next__, nest x4: with the run lambda, seven frames
        pass

if variant == "c-run":
    make = lambda: greenlet(main.switch)
elif variant == "depth-1":
    make = lambda: greenlet(park)
elif variant == "depth-6":
    make = lambda: greenlet(lambda: nest(4))  # lambda, nest x5 = six Python frames
else:
    make = lambda: greenlet(lambda: handler())

for g in [make() for _ in range(200)]:  # warm the allocator's pools
    g.switch()
held = []
gc.collect()
if trace:
    tracemalloc.start()
rss, vm = rss_kib(), vm_kib()
for _ in range(count):
    g = make()
    g.switch()
    held.append(g)
gc.collect()
out = {"rss": (rss_kib() - rss) * 1024 / count, "vm": (vm_kib() - vm) * 1024 / count,
       "getsizeof": sys.getsizeof(held[0])}
if trace:
    out["traced"] = tracemalloc.get_traced_memory()[0] / count
print(json.dumps(out))
'''


def run(variant: str, count: int, trace: bool) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CHILD, variant, str(count), str(int(trace))],
                          capture_output=True, text=True, check=True, timeout=120)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]}, greenlet "
          f"{__import__('greenlet').__version__}, {args.count:,} greenlets per variant")
    print("| variant | RSS B/greenlet | traced B (object, C++ state, saved C stack) "
          "| untraced B (data-stack pages) | virtual B/greenlet |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for variant in VARIANTS:
        plain = run(variant, args.count, False)
        traced = run(variant, args.count, True)
        print(f"| {variant} | {plain['rss']:,.0f} | {traced['traced']:,.0f} "
              f"| {plain['rss'] - traced['traced']:,.0f} | {plain['vm']:,.0f} |")


if __name__ == "__main__":
    main()
