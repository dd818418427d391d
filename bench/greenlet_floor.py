"""The memory floor of a parked greenlet on this runtime: what a WebSocket handler waiting in
``for message in ws`` cannot cost less than, whatever tpd2py does above it.

Usage: ``python bench/greenlet_floor.py [--count 10000]`` (no server; a few seconds).

For each variant, ``--count`` greenlets are started in a fresh subprocess and each switches
back to the main greenlet at once, then stays switched out; per greenlet we report:
- RSS: the process's resident set growth over the count (what ws_bench.py measures);
- traced: bytes allocated through Python's allocators (tracemalloc, a second run: the
  greenlet object and its saved C stack, which greenlet copies to the heap with PyMem);
- C stack: the greenlet's saved stack (``greenlet._greenlet`` does not expose it, so it is
  the traced bytes minus ``sys.getsizeof`` of the greenlet and of its frame objects);
- mmaps: new anonymous mappings per greenlet (/proc/self/maps): CPython 3.11 keeps frames in
  per-thread "data stack" chunks (16 KiB, from the object arena allocator's mmap), and
  greenlet gives every greenlet its own: one mapping each, its first page touched.
Variants: ``c-run`` (run is a C callable: no Python frame, no data-stack chunk); ``depth-1``
(a Python function that switches); ``depth-6`` (six nested Python calls, the depth of a
tpd2py handler parked in ``for message in ws``: _run, handler, __iter__, receive, _park,
hub.park).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

VARIANTS = ("c-run", "depth-1", "depth-6")

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

def maps():
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)

def park():
    main.switch()

def nest(n):
    if n:
        nest(n - 1)
    else:
        main.switch()

if variant == "c-run":
    make = lambda: greenlet(main.switch)
elif variant == "depth-1":
    make = lambda: greenlet(park)
else:
    make = lambda: greenlet(lambda: nest(4))  # lambda, nest x5 = six Python frames

for g in [make() for _ in range(200)]:  # warm the allocator's pools
    g.switch()
held = []
gc.collect()
if trace:
    tracemalloc.start()
rss, mapped = rss_kib(), maps()
for _ in range(count):
    g = make()
    g.switch()
    held.append(g)
gc.collect()
out = {"rss": (rss_kib() - rss) * 1024 / count, "maps": (maps() - mapped) / count,
       "getsizeof": sys.getsizeof(held[0])}
if trace:
    out["traced"] = tracemalloc.get_traced_memory()[0] / count
    frame = held[0].gr_frame
    frames = 0
    while frame is not None:
        frames += sys.getsizeof(frame)
        frame = frame.f_back
    out["frames"] = frames
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
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"Python {sys.version.split()[0]}, greenlet "
          f"{__import__('greenlet').__version__}, {args.count:,} greenlets per variant")
    print("| variant | RSS B/greenlet | traced B | greenlet object B | frames B | saved C stack B "
          "| mmaps/greenlet |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for variant in VARIANTS:
        plain = run(variant, args.count, False)
        traced = run(variant, args.count, True)
        stack = traced["traced"] - traced["getsizeof"] - traced["frames"]
        print(f"| {variant} | {plain['rss']:,.0f} | {traced['traced']:,.0f} "
              f"| {traced['getsizeof']} | {traced['frames']} | {stack:,.0f} "
              f"| {plain['maps']:.2f} |")


if __name__ == "__main__":
    main()
