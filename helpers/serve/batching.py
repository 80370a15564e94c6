"""Micro-batching: images from concurrent requests share one forward pass on the device.

A worker thread takes the first waiting request, then keeps collecting until `max_batch` images
are gathered or `max_wait_ms` has passed since that first one, runs the batch once and hands each
request its own rows. Under load this turns many small forward passes into a few large ones; a
lone request waits at most `max_wait_ms` more than it would alone.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future

import numpy as np


class MicroBatcher:
    """`submit(images)` -> a Future of `run_batch(images)`'s rows for those images, batched with others'."""

    def __init__(self, run_batch, *, max_batch: int = 64, max_wait_ms: float = 5.0, lock: threading.Lock | None = None):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.lock = lock or threading.Lock()  # shared with anything else that uses the model
        self.batches = 0  # forward passes run (for the benchmark and the tests)
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
        self._thread.start()

    def submit(self, images: np.ndarray) -> Future:
        future: Future = Future()
        self._queue.put((images, future))
        return future

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _collect(self, first) -> list:
        """The first request and those arriving within max_wait of it, up to max_batch images."""
        items, count = [first], len(first[0])
        deadline = time.monotonic() + self.max_wait
        while count < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # let the loop see it after this batch
                break
            items.append(item)
            count += len(item[0])
        return items

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            items = self._collect(first)
            try:
                with self.lock:
                    rows = self.run_batch(np.concatenate([images for images, _ in items]))
                    self.batches += 1
            except Exception as exc:  # every waiting request learns why
                for _, future in items:
                    future.set_exception(exc)
                continue
            start = 0
            for images, future in items:
                future.set_result(rows[start:start + len(images)])
                start += len(images)
