"""Load test of the diagnosis application: N concurrent uploads against a local server.

Starts ``medattn serve`` on the loopback interface (127.0.0.1 only) with a
fresh data directory, creates a user and an API token, uploads N images
concurrently through the REST API (a client answered 503 waits as told by
Retry-After and tries again), waits for every job to finish, checks that every
accepted job completed and is stored with its files, and reports p50/p95
latency (upload accepted, and upload-to-done) and throughput, once per worker
count (``--workers 1 2``).

    .venv/bin/python benchmarks/app_load.py --n 50 --concurrency 50 --workers 1 2

Writes ``benchmarks/results/app_load.{json,md}``. The loop is bounded in
count and time and stops by itself.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from medattn.utils.fileio import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "kvasir" / "images"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def _server(args: argparse.Namespace, workers: int) -> tuple[subprocess.Popen, str, Path, dict[str, str]]:
    """Start ``medattn serve`` on a fresh data folder; returns (process, base URL, data folder, env)."""
    data_dir = Path(tempfile.mkdtemp(prefix="medattn-load-"))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the app sets threads per worker
    env.update({"MEDATTN_DATA_DIR": str(data_dir), "MEDATTN_PASSWORD": "load-test-password",
                "MEDATTN_QUEUE_SIZE": str(args.queue_size or max(args.n, 32))})
    if args.install is not None:
        import shutil

        src = args.install / "best.safetensors" if args.install.is_dir() else args.install
        (data_dir / "models").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, data_dir / "models" / "load-model.safetensors")
        shutil.copyfile(src.with_suffix(".json"), data_dir / "models" / "load-model.json")
        args.model = args.model or "load-model"
    medattn = [sys.executable, "-m", "medattn"]
    subprocess.run([*medattn, "users", "create", "load"], env=env, check=True, capture_output=True)
    server = subprocess.Popen([*medattn, "serve", "--port", str(port), "--workers", str(workers)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return server, f"http://127.0.0.1:{port}", data_dir, env


def _wait_up(base: str, server: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.time() > deadline or server.poll() is not None:
            raise SystemExit("server did not start")
        time.sleep(0.5)


def _token(base: str) -> str:
    import re

    with httpx.Client(base_url=base, timeout=60) as c:
        page = c.get("/login")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = c.post("/login", data={"username": "load", "password": "load-test-password", "csrf_token": csrf})
        if r.status_code != 303:
            raise SystemExit(f"sign-in failed: HTTP {r.status_code}")
        home = c.get("/")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)
        return c.post("/api/tokens", data={"name": "load"}, headers={"X-CSRF-Token": csrf}).json()["token"]


def run_load(args: argparse.Namespace, workers: int) -> dict[str, object]:
    """One load run against a fresh server with ``workers`` inference workers."""
    import shutil

    images = sorted(SAMPLES.glob("*.jpg"))
    server, base, data_dir, _ = _server(args, workers)
    try:
        _wait_up(base, server)
        auth = {"Authorization": f"Bearer {_token(base)}"}
        # warm-up: the first request that lists models imports the zoo (seconds); not part of the measurement
        httpx.get(f"{base}/api/models", headers=auth, timeout=120).raise_for_status()

        def upload(i: int) -> tuple[str | None, float, float, int]:
            """(case id or None when refused, accepted after s, done after s, 503 answers seen)."""
            img = images[i % len(images)]
            t0 = time.perf_counter()
            refused = 0
            with httpx.Client(base_url=base, timeout=120, headers=auth) as c:
                while True:
                    r = c.post("/api/cases", files={"files": (img.name, img.read_bytes(), "image/jpeg")},
                               data={"pipeline": args.pipeline, "model": args.model})
                    if r.status_code != 503 or refused >= args.retries:
                        break
                    refused += 1  # queue full: nothing was stored; wait as told and try again
                    time.sleep(min(float(r.headers.get("retry-after", 1)), args.poll * 5))
                if r.status_code == 503:
                    return None, time.perf_counter() - t0, float("nan"), refused
                r.raise_for_status()
                accepted = time.perf_counter() - t0
                cid = r.json()["cases"][0]["id"]
                while time.perf_counter() - t0 < args.timeout:
                    st = c.get(f"/api/cases/{cid}").json()
                    if st["status"] in ("done", "failed"):
                        break
                    time.sleep(args.poll)
                return cid, accepted, time.perf_counter() - t0, refused

        t_start = time.perf_counter()
        with cf.ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(upload, range(args.n)))
        wall = time.perf_counter() - t_start

        with httpx.Client(base_url=base, timeout=60, headers=auth) as c:
            stored = c.get("/api/cases", params={"limit": 500}).json()["cases"]
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)
    by_id = {c["id"]: c for c in stored}
    ok = [r for r in results if r[0] is not None]
    done = [cid for cid, *_ in ok if by_id.get(cid, {}).get("status") == "done"]
    with_files = [cid for cid in done if any(f["kind"] == "mask" for f in by_id[cid]["files"])]
    accepted = [a for _, a, _, _ in ok] or [float("nan")]
    total = [t for _, _, t, _ in ok] or [float("nan")]
    return {
        "n": args.n, "concurrency": args.concurrency, "pipeline": args.pipeline, "workers": workers,
        "model": args.model or "(default)", "accepted": len(ok), "refused_503": sum(r[3] for r in results),
        "never_accepted": args.n - len(ok), "completed": len(done), "stored_with_files": len(with_files),
        "cases_stored": len(stored), "every_accepted_completed": len(done) == len(ok) == len(stored),
        "upload_p50_s": _pct(accepted, 0.5), "upload_p95_s": _pct(accepted, 0.95),
        "done_p50_s": _pct(total, 0.5), "done_p95_s": _pct(total, 0.95),
        "throughput_cases_per_s": len(done) / wall, "wall_s": wall,
        "mean_done_s": statistics.mean(total), "cpu_count": os.cpu_count(),
    }


def _markdown(runs: list[dict[str, object]]) -> str:
    lines = ["| workers | uploads | concurrency | accepted (503 answers) | completed | every accepted job done "
             "| upload p50 / p95 (s) | done p50 / p95 (s) | throughput (cases/s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['workers']} | {r['n']} | {r['concurrency']} | {r['accepted']} ({r['refused_503']}) "
                     f"| {r['completed']} | {'yes' if r['every_accepted_completed'] else 'NO'} "
                     f"| {r['upload_p50_s']:.2f} / {r['upload_p95_s']:.2f} "
                     f"| {r['done_p50_s']:.1f} / {r['done_p95_s']:.1f} | {r['throughput_cases_per_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50, help="uploads")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--pipeline", default="segment")
    ap.add_argument("--model", default="", help="model name (default: the pipeline's default)")
    ap.add_argument("--install", type=Path, default=None,
                    help="checkpoint (.safetensors with its .json card, or a run folder) to install in the "
                    "server's models folder as 'load-model' and use")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="server inference workers; one run per value")
    ap.add_argument("--queue-size", type=int, default=0, help="server queue size (default max(n, 32))")
    ap.add_argument("--retries", type=int, default=20, help="times a client retries after HTTP 503")
    ap.add_argument("--timeout", type=float, default=900, help="seconds before giving up")
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between a client's status requests")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)

    runs = [run_load(args, w) for w in args.workers]
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "app_load.json", json.dumps({"runs": runs}, indent=2))
    md = _markdown(runs)
    atomic_write_text(args.out / "app_load.md", md)
    print(md, end="")
    return 0 if all(r["every_accepted_completed"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
