"""Load test of `python -m helpers serve` on 127.0.0.1: throughput and latency with micro-batching on and off.

Starts the server twice on free local ports (micro-batching on, then `--no-batching`), sends each
the same bounded load (`--requests` POST /predict of one 32x32 PNG each, `--concurrency` at a time
over keep-alive connections, after a short warm-up) and stops it. The last line prints both
modes side by side and the throughput ratio. Without `--checkpoint` it serves a `--model`
with random weights (the weights do not change the speed).

    python benchmarks/serve_load.py [--checkpoint PATH | --model resnet18] [--requests 2000] [--concurrency 16]
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_checkpoint(model: str, folder: Path) -> Path:
    """A checkpoint of a registry model with random weights (mean/std of CIFAR-10)."""
    import torch

    from helpers.models.checkpoint import save_checkpoint
    from helpers.data.loader import CIFAR10_MEAN, CIFAR10_STD
    from helpers.models import build_model
    torch.manual_seed(0)
    return save_checkpoint(folder / f"{model}.pt", build_model(model, num_classes=10), mean=CIFAR10_MEAN,
                           std=CIFAR10_STD)


def start_server(checkpoint: Path, *extra: str) -> tuple[subprocess.Popen, int]:
    """The server in a subprocess, once /health answers: (process, port)."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "helpers", "serve", str(checkpoint), "--port", str(port), *extra],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server stopped: {process.stderr.read()}")
        try:
            health(port)
            return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start within 120 s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    process.stderr.close()


def health(port: int) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def load(port: int, body: bytes, content_type: str, requests: int, concurrency: int) -> tuple[float, list[float], int]:
    """(seconds, latencies in s, failures) of `requests` POSTs sent by `concurrency` threads, each
    with its own keep-alive connection."""
    latencies: list[float] = []
    failures = [0]
    counter = iter(range(requests))
    lock = threading.Lock()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                start = time.perf_counter()
                conn.request("POST", "/predict", body=body, headers={"Content-Type": content_type})
                response = conn.getresponse()
                response.read()
                elapsed = time.perf_counter() - start
                with lock:
                    latencies.append(elapsed)
                    failures[0] += response.status != 200
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start, latencies, failures[0]


def measure(checkpoint: Path, extra: list[str], body: bytes, content_type: str, args) -> dict:
    process, port = start_server(checkpoint, *extra)
    try:
        load(port, body, content_type, args.warmup, args.concurrency)
        before = health(port)
        seconds, latencies, failures = load(port, body, content_type, args.requests, args.concurrency)
        after = health(port)
    finally:
        stop_server(process)
    ms = np.array(latencies) * 1000
    passes = after["forward_passes"] - before["forward_passes"]
    return {"throughput": len(latencies) / seconds, "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "failures": failures, "seconds": seconds,
            "per_pass": (after["images"] - before["images"]) / max(passes, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="a course checkpoint (default: --model with random weights)")
    parser.add_argument("--model", default="resnet18",
                        help="registry model served without --checkpoint (default resnet18)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--device", help="the server's device (default: the best available)")
    args = parser.parse_args()
    from PIL import Image

    from helpers.serve.client import multipart
    from helpers.data.synthetic import generate
    image, _ = generate(1, seed=0)
    png = io.BytesIO()
    Image.fromarray(image[0]).save(png, format="PNG")
    body, content_type = multipart([("image.png", png.getvalue())])
    device = ["--device", args.device] if args.device else []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or random_checkpoint(args.model, Path(tmp))
        name = args.checkpoint.name if args.checkpoint else f"{args.model} (random weights)"
        print(f"serve_load: {name}, {args.requests} requests of one 32x32 PNG, {args.concurrency} concurrent, "
              f"{os.cpu_count()} CPUs")
        results = {}
        for mode, extra in (("on", ["--max-wait-ms", str(args.max_wait_ms)]), ("off", ["--no-batching"])):
            results[mode] = r = measure(checkpoint, extra + device, body, content_type, args)
            print(f"  micro-batching {mode:>3}: {r['throughput']:7.1f} req/s  p50 {r['p50']:7.1f} ms  "
                  f"p99 {r['p99']:7.1f} ms  {r['per_pass']:.1f} images/forward pass  "
                  f"{r['failures']} failed  ({r['seconds']:.1f} s)")
    on, off = results["on"], results["off"]
    print(f"batching on: {on['throughput']:.1f} req/s, p50 {on['p50']:.1f} ms, p99 {on['p99']:.1f} ms | "
          f"off: {off['throughput']:.1f} req/s, p50 {off['p50']:.1f} ms, p99 {off['p99']:.1f} ms | "
          f"throughput {on['throughput'] / off['throughput']:.2f}x")


if __name__ == "__main__":
    main()
