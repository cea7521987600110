"""Load on POST /v1/moderation/check over loopback: zero 5xx, no request lost.

Starts ``chopmark serve`` on 127.0.0.1 (a temporary data folder, embedded PostgreSQL), makes an
API key with the CLI, registers a few works, then sends bounded-concurrency load for
``--duration`` seconds: edited copies of registered works, unregistered images and a few
malformed uploads. Every request must come back: status codes are counted, as are requests that
got no answer (lost). Afterwards the recorded checks in Postgres are counted against the 200s.
Loopback only: the server binds 127.0.0.1 and the client calls nothing else.

If the served app does not have the moderation routes yet, the same app is served with them
added (``--factory`` forces that), through uvicorn on 127.0.0.1.

    OMP_NUM_THREADS=1 python bench/load_moderation.py --images /work/shared/data/images \
        --duration 60 --concurrency 4 --out bench/results/moderation_load.md
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} never became ready")


def jpeg(img: Image.Image, quality: int = 85) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def edit(img: Image.Image) -> Image.Image:
    w, h = img.size
    return img.crop((int(w * 0.05), int(h * 0.05), int(w * 0.94), int(h * 0.95)))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def count_records(data_dir: Path) -> tuple[int, int]:
    """Checks and their audit entries, read from the server's embedded database."""
    import psycopg

    from service.db.embedded import embedded_database_url, stop_embedded

    try:
        with psycopg.connect(embedded_database_url(data_dir / "postgres")) as conn:
            checks = conn.execute("SELECT count(*) FROM moderation_checks").fetchone()
            audits = conn.execute(
                "SELECT count(*) FROM audit_log WHERE kind = 'moderation.checked'"
            ).fetchone()
        return int(checks[0]), int(audits[0])  # type: ignore[index]
    finally:
        stop_embedded(data_dir / "postgres")


async def load(
    url: str, key: str, bodies: list[tuple[str, bytes]], duration: float, concurrency: int
) -> tuple[Counter, Counter, list[float], int]:
    statuses: Counter = Counter()
    lost: Counter = Counter()
    latencies: list[float] = []
    sent = 0
    deadline = time.monotonic() + duration
    rng = np.random.default_rng(5)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120, limits=limits
    ) as client:

        async def user() -> None:
            nonlocal sent
            while time.monotonic() < deadline:
                kind, data = bodies[int(rng.integers(len(bodies)))]
                sent += 1
                s = time.perf_counter()
                try:
                    r = await client.post(
                        "/v1/moderation/check",
                        files={"file": ("q.jpg", data, "image/jpeg")},
                        data={"user": "load-user", "context": kind},
                    )
                except httpx.HTTPError as exc:
                    lost[type(exc).__name__] += 1
                    continue
                latencies.append((time.perf_counter() - s) * 1e3)
                verdict = r.json().get("verdict", "-") if r.status_code == 200 else "-"
                statuses[(kind, r.status_code, verdict)] += 1

        await asyncio.gather(*(user() for _ in range(concurrency)))
    return statuses, lost, latencies, sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="chopmark-load-"))
    root.chmod(0o755)
    data_dir = root / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHOPMARK_")}
    env |= {"CHOPMARK_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "service.cli.main"]
    port = free_port()
    url = f"http://{HOST}:{port}"
    serve_cmd = [*cli, "serve", "--host", HOST, "--port", str(port)]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    server = None
    how = "chopmark serve"
    try:
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        server = subprocess.Popen(serve_cmd, env=env, **quiet)
        wait_ready(url, server)
        key = subprocess.run(
            [*cli, "keys", "create", "--name", "load", "--scope", "moderate", "--scope",
             "registry"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]  # fmt: skip

        files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
        registered, free = files[:12:2], files[101:161:3]
        h = {"Authorization": f"Bearer {key}"}
        artist = httpx.post(
            f"{url}/v1/artists", json={"display_name": "L", "email": "l@example.org"}, headers=h
        ).json()
        r = httpx.post(
            f"{url}/v1/artists/{artist['id']}/artworks",
            files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in registered],
            headers=h,
            timeout=120,
        )
        r.raise_for_status()
        bodies = [("copy", jpeg(edit(Image.open(p)))) for p in registered]
        bodies += [("free", p.read_bytes()) for p in free]
        bodies += [("malformed", b"\xff\xd8\xff\xe0 truncated"), ("malformed", b"")]

        print(f"serving with {how}; {args.concurrency} concurrent clients for {args.duration} s")
        t0 = time.perf_counter()
        statuses, lost, lat, sent = asyncio.run(
            load(url, key, bodies, args.duration, args.concurrency)
        )
        wall = time.perf_counter() - t0

        recorded, audited = count_records(data_dir)
    finally:
        if server is not None:
            stop(server)
        shutil.rmtree(root, ignore_errors=True)

    answered = sum(statuses.values())
    ok = sum(n for (_, code, _), n in statuses.items() if code == 200)
    five = sum(n for (_, code, _), n in statuses.items() if code >= 500)
    lat_a = np.asarray(lat)
    lines = [
        f"Server: {how}, 1 process, on {HOST}:{port}; {args.concurrency} concurrent clients "
        f"for {args.duration:.0f} s (wall {wall:.1f} s).",
        "",
        "| kind | status | verdict | count |",
        "|---|---:|---|---:|",
        *[f"| {k} | {c} | {v} | {n} |" for (k, c, v), n in sorted(statuses.items())],
        "",
        f"Sent {sent}, answered {answered}, lost {sum(lost.values())}"
        + (f" {dict(lost)}" if lost else "")
        + "; "
        f"5xx: {five}.",
        f"Checks recorded in Postgres: {recorded} (200 answers: {ok}); audit entries "
        f"'moderation.checked': {audited}.",
        f"Throughput {answered / wall:.1f} requests/s; latency p50 {np.percentile(lat_a, 50):.0f}"
        f" ms, p99 {np.percentile(lat_a, 99):.0f} ms, max {lat_a.max():.0f} ms.",
        "",
        "Result: "
        + (
            "PASS (zero 5xx, no request lost, every 200 recorded)"
            if five == 0 and not lost and sent == answered and recorded == ok
            else "FAIL"
        ),
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        command = "OMP_NUM_THREADS=1 python " + " ".join(sys.argv)
        args.out.write_text(
            "# Moderation under load (loopback)\n\n"
            f"Command: `{command}`\n\n"
            f"Machine: {os.cpu_count()} CPU cores shared with other work.\n\n" + text + "\n"
        )


if __name__ == "__main__":
    main()
