"""What the prediction service does, apart from HTTP: check and decode uploads, classify them
(micro-batched or one request at a time), draw Grad-CAM overlays and describe the model.

Nothing here imports FastAPI, so it can be used and tested without the web stack.
"""
from __future__ import annotations

import base64
import io
import threading

import numpy as np

from ..eval.inference import INPUT_SIZE, ImageError, decode_image, top_k
from ..eval.predictor import Predictor, cam_layer
from .batching import MicroBatcher

MAX_FILES = 32                 # images in one request
MAX_FILE_BYTES = 10 * 2**20    # 10 MB per image
MAX_SIDE = 4096                # pixels per side
TOP_K = 5
STATUS = {"empty": 400, "corrupt": 400, "not_image": 415, "too_large": 413}


class BadInput(Exception):
    """A request the service refuses: an HTTP status (4xx) and a plain message saying what to fix."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def check_count(count: int) -> None:
    """BadInput unless 1 to MAX_FILES images were sent."""
    if count == 0:
        raise BadInput(400, "no image in the request: send one or more files as multipart/form-data fields "
                            "named 'files'")
    if count > MAX_FILES:
        raise BadInput(400, f"{count} files in one request, over the limit of {MAX_FILES}: send them in several "
                            "requests")


def decode_upload(name: str, data: bytes) -> np.ndarray:
    """One uploaded file as the model's uint8 (32, 32, 3) input, or BadInput saying what is wrong with it."""
    if len(data) > MAX_FILE_BYTES:
        raise BadInput(413, f"{name} is over {MAX_FILE_BYTES // 2**20} MB: send a smaller image")
    try:
        return decode_image(data, name, INPUT_SIZE, max_side=MAX_SIDE)
    except ImageError as exc:
        raise BadInput(STATUS.get(exc.reason, 400), str(exc)) from None


def overlay_png(image: np.ndarray, cam: np.ndarray, scale: int = 6) -> bytes:
    """PNG of the image with its Grad-CAM map laid over it in the 'jet' colours, `scale` times enlarged."""
    from matplotlib import colormaps
    from PIL import Image
    size = image.shape[0] * scale
    base = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    heat = np.asarray(Image.fromarray(cam.astype(np.float32)).resize((size, size), Image.Resampling.BILINEAR))
    colour = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    blended = (0.55 * base + 0.45 * colour).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(blended).save(out, format="PNG")
    return out.getvalue()


class Service:
    """A Predictor behind a lock, with an optional MicroBatcher in front of its forward passes."""

    def __init__(self, predictor: Predictor, *, batching: bool = True, max_batch: int = 64, max_wait_ms: float = 5.0):
        self.predictor = predictor
        self.lock = threading.Lock()  # one forward pass or Grad-CAM at a time: they share the model's hooks
        self.batcher = (MicroBatcher(self.probabilities, max_batch=max_batch, max_wait_ms=max_wait_ms, lock=self.lock)
                        if batching else None)
        self.max_wait_ms = max_wait_ms
        self.max_batch = max_batch
        self.layer = cam_layer(predictor.model)
        self.forward_passes = self.images = 0
        self.probabilities(np.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), np.uint8))  # fails here, at start, if it must
        self.forward_passes = self.images = 0  # counted under the lock; GET /health shows them

    @classmethod
    def from_checkpoint(cls, path, *, device=None, tta=None, batching: bool = True, max_batch: int = 64,
                        max_wait_ms: float = 5.0) -> "Service":
        """The service for a checkpoint; CheckpointError (from Predictor.from_checkpoint) when it cannot load."""
        return cls(Predictor.from_checkpoint(path, device=device, tta=tta), batching=batching, max_batch=max_batch,
                   max_wait_ms=max_wait_ms)

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N, C) of uint8 images, in one forward pass (the caller holds the lock)."""
        out = self.predictor.probabilities(images).numpy()
        self.forward_passes += 1
        self.images += len(images)
        return out

    def classify_now(self, images: np.ndarray) -> np.ndarray:
        """Probabilities from a forward pass of these images alone (micro-batching off)."""
        with self.lock:
            return self.probabilities(images)

    def overlays(self, images: np.ndarray, targets) -> list[str] | None:
        """Base64 PNG overlays of Grad-CAM for `targets` (one class per image), or None for a model
        without a spatial feature map."""
        if self.layer is None:
            return None
        with self.lock:
            cams = self.predictor.heatmaps(images, targets=[int(t) for t in targets], layer=self.layer).numpy()
        return [base64.b64encode(overlay_png(image, cam)).decode() for image, cam in zip(images, cams)]

    def results(self, names: list[str], probs: np.ndarray, pngs: list[str] | None, gradcam: bool) -> list[dict]:
        """One JSON-able answer per image: the top-5 classes with probabilities, and the overlay when asked."""
        classes = self.predictor.classes
        values, indices = top_k(probs, TOP_K)
        out = []
        for i, name in enumerate(names):
            top = [{"index": int(j), "class": classes[j], "probability": float(p)}
                   for p, j in zip(values[i].tolist(), indices[i].tolist())]
            row = {"file": name, "prediction": top[0], "top5": top}
            if gradcam:
                if pngs is None:
                    row["gradcam_note"] = "no heat map: this model has no convolutional feature map"
                else:
                    row["gradcam_png"] = pngs[i]
            out.append(row)
        return out

    def model_info(self) -> dict:
        """What GET /model answers: name, classes, parameters, recorded accuracy, temperature and more."""
        p = self.predictor
        return {"name": p.name, "classes": p.classes, "num_classes": len(p.classes or []),
                "parameters": p.info.get("parameters"), "accuracy": p.info.get("accuracy"),
                "accuracy_source": p.info.get("accuracy_source"), "temperature": p.temperature,
                "calibrated": p.info.get("calibration") is not None, "tta": p.tta or "none",
                "input_size": [INPUT_SIZE, INPUT_SIZE], "mean": p.mean, "std": p.std, "device": str(p.device),
                "dataset": p.info.get("dataset"), "gradcam": self.layer is not None,
                "batching": {"on": self.batcher is not None, "max_batch": self.max_batch,
                             "max_wait_ms": self.max_wait_ms},
                "limits": {"files_per_request": MAX_FILES, "bytes_per_image": MAX_FILE_BYTES,
                           "pixels_per_side": MAX_SIDE}}
