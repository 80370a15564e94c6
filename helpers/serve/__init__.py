"""`python -m helpers serve`: a checkpoint behind a small HTTP service and web page, on 127.0.0.1 by default.

    python -m helpers serve out/r18/checkpoint.pt [--port 8000] [--no-batching]

POST /predict takes one or more images as multipart/form-data (any size or format Pillow reads,
cropped to the centre square and resized to 32x32) and answers JSON with each image's top-5
calibrated probabilities, and with `?gradcam=1` a Grad-CAM overlay as base64 PNG. GET / is a
page where a person uploads or drops an image and sees the bars and the heat map; GET /health
and GET /model describe the service. Requests are micro-batched: images arriving within a few
milliseconds share one forward pass (`--no-batching` runs each request alone, for comparison).
Bad input is a 4xx with a plain message; a checkpoint that cannot be loaded stops the server at
start with the reason. FastAPI, uvicorn and python-multipart are imported only when it starts.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ..eval.inference import TTA_CHOICES

NEEDED = {"fastapi": "fastapi", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("checkpoint", type=Path, help="a checkpoint saved by the course")
    a("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    a("--port", type=int, default=8000, help="default 8000")
    a("--device", help="cuda, cpu, mps; default: the best available")
    a("--tta", choices=TTA_CHOICES, help="test-time views (default: those the stored temperature was fitted with)")
    a("--no-batching", action="store_true", help="run every request's forward pass alone (no micro-batching)")
    a("--max-batch", type=int, default=64, help="images per micro-batch at most (default 64)")
    a("--max-wait-ms", type=float, default=5.0, help="how long a micro-batch waits for more requests (default 5 ms)")
    a("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
      help="uvicorn's log level (default warning; info logs every request)")


def missing_packages() -> list[str]:
    """The pip names of the web packages that cannot be imported (imported here, only when serving)."""
    missing = []
    for module, pip in NEEDED.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(pip)
    return missing


def run(args: argparse.Namespace) -> int:
    from ..models.checkpoint import CheckpointError
    if missing := missing_packages():
        print(f"[serve] the service needs {', '.join(missing)}: pip install {' '.join(missing)}", file=sys.stderr)
        return 2
    from .service import Service
    try:
        service = Service.from_checkpoint(args.checkpoint, device=args.device, tta=args.tta,
                                          batching=not args.no_batching, max_batch=args.max_batch,
                                          max_wait_ms=args.max_wait_ms)
    except CheckpointError as exc:
        print(f"[serve] cannot serve {args.checkpoint}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the model fails on an image: say so now, not at the first request
        print(f"[serve] cannot serve {args.checkpoint}: the model fails on a 32x32 image "
              f"({type(exc).__name__}: {str(exc)[:200]})", file=sys.stderr)
        return 2
    import uvicorn

    from .app import create_app
    p = service.predictor
    batching = (f"micro-batching up to {args.max_batch} images, {args.max_wait_ms:g} ms wait"
                if service.batcher is not None else "no micro-batching")
    print(f"[serve] {p.name} ({len(p.classes or [])} classes, temperature {p.temperature:.3f}, "
          f"test-time views: {p.tta or 'none'}) on {p.device}, {batching}", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"[serve] listening on {args.host}: anyone who can reach it can use it (there is no login)", flush=True)
    print(f"[serve] open http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True)
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level=args.log_level)
    return 0
