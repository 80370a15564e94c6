"""A small client for the service, standard library only: the tests and benchmarks/serve_load.py use it,
and so can a script (`post_images("http://127.0.0.1:8000", [("cat.jpg", data)])`)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid


def multipart(files, fields=()) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request: each (name, bytes) in `files` as a field
    named 'files', each (name, value) in `fields` as a plain field."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for filename, data in files:
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")
        parts.append(head.encode() + bytes(data) + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def request(url: str, body: bytes | None = None, content_type: str | None = None,
            timeout: float = 60) -> tuple[int, dict]:
    """(HTTP status, JSON answer) of a GET (no body) or POST; a 4xx/5xx answer is returned, not raised."""
    headers = {"Content-Type": content_type} if content_type else {}
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, {"detail": text.decode(errors="replace")}


def post_images(base_url: str, files, *, gradcam: bool = False, timeout: float = 60) -> tuple[int, dict]:
    """POST (name, bytes) images to base_url/predict; (status, JSON answer)."""
    body, content_type = multipart(files)
    return request(f"{base_url.rstrip('/')}/predict" + ("?gradcam=1" if gradcam else ""), body, content_type, timeout)
