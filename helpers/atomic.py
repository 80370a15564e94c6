"""Atomic file writes: a reader, or a crash, never sees half a file.

Everything the course writes (caches, checkpoints, histories, reports, figures) goes through
`atomic_write`: the data goes to a temporary file in the same folder, is flushed to disk, made
readable by the group (TAs share course folders) and renamed over the target. On any failure
the temporary file is removed and the previous file, if any, is left as it was.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", newline: str | None = None):
    """`with atomic_write(path, "w") as f: ...` writes `path` all at once or not at all."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": newline})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj) -> Path:
    """Write `obj` as indented JSON, atomically."""
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    return Path(path)
