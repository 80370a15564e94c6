"""The FastAPI app: POST /predict, GET / (the page), GET /health, GET /model.

Imported only by `python -m helpers serve` (FastAPI, Starlette and python-multipart are needed
here and nowhere else in helpers).
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile

from .page import PAGE
from .service import MAX_FILE_BYTES, MAX_FILES, BadInput, Service, check_count, decode_upload

TRUE = ("1", "true", "yes", "on")


def _refuse(exc: BadInput) -> JSONResponse:
    return JSONResponse({"detail": exc.message}, status_code=exc.status)


async def _uploads(request: Request) -> tuple[list[tuple[str, bytes]], bool]:
    """((file name, bytes) of every uploaded file, whether Grad-CAM was asked for); BadInput on a bad request."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_FILES * MAX_FILE_BYTES + 2**20:
        raise BadInput(413, f"the request is {int(length) / 2**20:,.0f} MB: at most {MAX_FILES} images of "
                            f"{MAX_FILE_BYTES // 2**20} MB each")
    try:
        form = await request.form(max_files=MAX_FILES + 1, max_fields=64)
    except Exception as exc:  # Starlette answers a malformed or oversized form with an HTTPException
        detail = str(getattr(exc, "detail", exc))
        if "Too many files" in detail:
            raise BadInput(400, f"too many files in one request, over the limit of {MAX_FILES}: send them in "
                                "several requests") from None
        raise BadInput(400, f"could not read the upload ({detail}): send the images as multipart/form-data "
                            "fields named 'files'") from None
    try:
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        check_count(len(files))
        gradcam = (request.query_params.get("gradcam") or str(form.get("gradcam") or "")).lower() in TRUE
        blobs = []
        for i, upload in enumerate(files):
            name = upload.filename or f"file {i + 1}"
            if upload.size is not None and upload.size > MAX_FILE_BYTES:
                raise BadInput(413, f"{name} is over {MAX_FILE_BYTES // 2**20} MB: send a smaller image")
            blobs.append((name, await upload.read(MAX_FILE_BYTES + 1)))
        return blobs, gradcam
    finally:
        await form.close()


def create_app(service: Service) -> FastAPI:
    """The app serving `service`; its interactive docs are off (they would load scripts from a CDN)."""
    @asynccontextmanager
    async def lifespan(_app):
        yield
        service.close()  # the batching thread ends with the server

    app = FastAPI(title="CIFAR classifier", docs_url=None, redoc_url=None, lifespan=lifespan)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "model": service.predictor.name, "batching": service.batcher is not None,
                "forward_passes": service.forward_passes, "images": service.images}

    @app.get("/model")
    async def model() -> dict:
        return service.model_info()

    @app.post("/predict")
    async def predict(request: Request):
        try:
            blobs, gradcam = await _uploads(request)
            images = await run_in_threadpool(lambda: [decode_upload(name, data) for name, data in blobs])
        except BadInput as exc:
            return _refuse(exc)
        batch = np.stack(images)
        if service.batcher is not None:
            probs = await asyncio.wrap_future(service.batcher.submit(batch))
        else:
            probs = await run_in_threadpool(service.classify_now, batch)
        pngs = await run_in_threadpool(service.overlays, batch, probs.argmax(1)) if gradcam else None
        p = service.predictor
        return {"model": p.name, "temperature": p.temperature, "tta": p.tta or "none",
                "results": service.results([name for name, _ in blobs], probs, pngs, gradcam)}

    return app
