"""A file served by the kernel: tpd2py's FileResponse against nginx (`sendfile on`).

Usage (from the repo root; needs wrk and nginx):
  .venv/bin/python bench/files_bench.py [--size-mib 10] [--connections 4] [--rounds 3]

Writes a file of --size-mib random bytes to a temporary folder, starts tpd2py (a handler that
returns `FileResponse(path)`) and nginx (one worker, `sendfile on`, the folder as its root) on
CPU --server-cpu, and runs `wrk -c N` on each in turn, --rounds times, the order alternating,
from CPU --client-cpu. Prints requests/s and MiB/s of each run and the medians; the issue's
target is tpd2py >= 0.9x nginx's bytes per second. Bounded: rounds (<= 10) x 2 x --duration.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` as a package

from bench import loaders, machine, servers  # noqa: E402

APP = """
import os
from tpd2py import App
from tpd2py.files import FileResponse
app = App()
PATH = os.environ["FILES_BENCH_PATH"]
@app.route("/file.bin")
def one(req):
    return FileResponse(PATH)
"""

NGINX = """
daemon off; master_process on; worker_processes 1; pid {dir}/nginx.pid; error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
    client_body_temp_path {dir}/cb; proxy_temp_path {dir}/p; fastcgi_temp_path {dir}/f;
    uwsgi_temp_path {dir}/u; scgi_temp_path {dir}/s;
    server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
"""


def start(argv: list[str], port: int, cpu: int, env: dict[str, str], cwd: Path
          ) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["taskset", "-c", str(cpu), *argv], env=env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            import socket
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{argv[0]} did not start")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=10)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1..10")
    work = Path(tempfile.mkdtemp(prefix="files-bench-"))
    os.chmod(work, 0o755)
    (work / "file.bin").write_bytes(os.urandom(args.size_mib << 20))
    os.chmod(work / "file.bin", 0o644)
    (work / "filesapp.py").write_text(APP)
    env = dict(os.environ, FILES_BENCH_PATH=str(work / "file.bin"),
               PYTHONPATH=f"{work}:{machine.ROOT}")
    results: dict[str, list[tuple[float, float]]] = {"tpd2py": [], "nginx": []}
    print(f"{args.size_mib} MiB file, wrk -c{args.connections} {args.duration:g} s; server on "
          f"cpu {args.server_cpu}, wrk on cpu {args.client_cpu}; commit {machine.commit()}")
    for round_no in range(1, args.rounds + 1):
        for name in (["tpd2py", "nginx"] if round_no % 2 else ["nginx", "tpd2py"]):
            port = servers.free_port()
            if name == "tpd2py":
                argv = [sys.executable, "-m", "tpd2py", "filesapp:app", "--port", str(port)]
            else:
                conf = work / f"nginx-{port}.conf"
                conf.write_text(NGINX.format(dir=work, port=port, root=work))
                argv = [loaders.tool("nginx"), "-p", str(work), "-c", str(conf), "-e",
                        "stderr"]
            proc = start(argv, port, args.server_cpu, env, work)
            try:
                row = loaders.wrk(port, "/file.bin", args.connections, args.duration,
                                  args.client_cpu)
            finally:
                proc.terminate()
                proc.wait(10)
            mib_s = row["rps"] * args.size_mib
            results[name].append((row["rps"], mib_s))
            print(f"round {round_no} {name:7s} {row['rps']:8.1f} req/s {mib_s:9.0f} MiB/s",
                  flush=True)
    med = {n: statistics.median(m for _, m in rows) for n, rows in results.items()}
    print(f"median MiB/s: tpd2py {med['tpd2py']:.0f}, nginx {med['nginx']:.0f}, "
          f"tpd2py/nginx {med['tpd2py'] / med['nginx']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
