"""`python -m helpers serve`: the real server in a subprocess on a free 127.0.0.1 port, called over HTTP.

Good images get what `python -m helpers predict` gives for the same files (top-1 and probabilities,
with the same temperature and test-time views), micro-batched or not; each bad input gets a 4xx
with a plain message; /health and /model describe the service; a checkpoint that cannot be loaded
stops the server at start with the reason; the page shows the top-5 bars and the heat map in a
real browser (tests/browser.py).
"""
import base64
import concurrent.futures
import csv
import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import cli
from helpers.serve.client import post_images, request
from helpers.serve.page import PAGE
from test_inference import train_small_checkpoint, write_images

pytest_plugins = ["browser"]
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m helpers serve` in a subprocess; stopped by its process id."""

    def __init__(self, checkpoint, *args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "COURSE_OFFLINE": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "helpers", "serve", str(checkpoint), "--port",
                                         str(self.port), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: {self.process.stderr.read()}")
            try:
                if request(self.url + "/health", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("the server did not answer /health within 90 s")

    def stop(self):
        self.process.terminate()  # SIGTERM to this process id only
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_small_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pt")


@pytest.fixture(scope="module")
def server(trained):
    # a long batching window makes the concurrency test's batches certain, not a matter of timing
    running = Server(trained[0], "--max-wait-ms", "50")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def photos(trained, tmp_path_factory):
    """A folder of test images and predict's CSV rows for it, by file."""
    folder = tmp_path_factory.mktemp("photos")
    rel = write_images(folder, trained[1])
    out = folder.parent / "predictions.csv"
    assert cli.main(["predict", str(trained[0]), str(folder), "--out", str(out), "--no-progress"]) == 0
    with open(out, newline="") as f:
        rows = {row["file"]: row for row in csv.DictReader(f)}
    return folder, rel, rows


def same_as_predict(result: dict, row: dict) -> None:
    assert result["prediction"]["index"] == int(row["pred"]) and result["prediction"]["class"] == row["pred_name"]
    assert [t["class"] for t in result["top5"]] == [row[f"class_{i}"] for i in range(1, 6)]
    assert [t["probability"] for t in result["top5"]] == pytest.approx(
        [float(row[f"prob_{i}"]) for i in range(1, 6)], abs=2e-6)


def png(size=(32, 32), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, 128 if mode == "L" else (120, 30, 200)).save(out, format="PNG")
    return out.getvalue()


def noisy_png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


# --------------------------------------------------------------------------- good requests

def test_health_and_model(server, trained):
    status, health = request(server.url + "/health")
    assert status == 200 and health["status"] == "ok" and health["batching"] is True
    status, model = request(server.url + "/model")
    assert status == 200
    assert model["name"] == "layers" and model["classes"] == trained[1].classes
    assert model["parameters"] > 1000 and model["temperature"] == 1.0 and model["tta"] == "none"
    assert model["accuracy"] is None and model["gradcam"] is True and model["input_size"] == [32, 32]


def test_predictions_are_those_of_the_predict_command(server, photos):
    folder, rel, rows = photos
    status, answer = post_images(server.url, [(r, (folder / r).read_bytes()) for r in rel])
    assert status == 200, answer
    assert [r["file"] for r in answer["results"]] == rel
    for result in answer["results"]:
        same_as_predict(result, rows[result["file"]])
        assert "gradcam_png" not in result


def test_concurrent_requests_share_forward_passes_and_get_their_own_rows(server, photos):
    folder, rel, rows = photos
    before = request(server.url + "/health")[1]
    barrier = threading.Barrier(len(rel))  # all requests leave at once

    def one(r):
        barrier.wait()
        return r, post_images(server.url, [(r, (folder / r).read_bytes())])

    with concurrent.futures.ThreadPoolExecutor(len(rel)) as pool:
        answers = list(pool.map(one, rel))
    for r, (status, answer) in answers:
        assert status == 200 and answer["results"][0]["file"] == r
        same_as_predict(answer["results"][0], rows[r])
    after = request(server.url + "/health")[1]
    assert after["images"] - before["images"] == len(rel)
    assert after["forward_passes"] - before["forward_passes"] < len(rel)  # some requests were batched together


def test_grad_cam_overlay_is_a_png(server, photos):
    folder, rel, _ = photos
    status, answer = post_images(server.url, [(rel[0], (folder / rel[0]).read_bytes())], gradcam=True)
    assert status == 200
    overlay = Image.open(io.BytesIO(base64.b64decode(answer["results"][0]["gradcam_png"])))
    assert overlay.format == "PNG" and overlay.size == (192, 192)


def test_without_micro_batching_the_answers_are_the_same(trained, photos):
    folder, rel, rows = photos
    alone = Server(trained[0], "--no-batching")
    try:
        assert request(alone.url + "/health")[1]["batching"] is False
        status, answer = post_images(alone.url, [(r, (folder / r).read_bytes()) for r in rel])
        assert status == 200
        for result in answer["results"]:
            same_as_predict(result, rows[result["file"]])
    finally:
        alone.stop()


# --------------------------------------------------------------------------- bad requests

@pytest.mark.parametrize("files, status, words", [
    ([("notes.txt", b"this is text, not an image")], 415, "notes.txt is not an image"),
    ([("empty.png", b"")], 400, "empty.png is empty"),
    ([("half.png", noisy_png()[:2000])], 400, "half.png cannot be decoded"),
    ([("huge.jpg", b"\xff" * (10 * 2**20 + 1))], 413, "over 10 MB"),
    ([("wide.png", png((4097, 4), "L"))], 413, "4097x4 pixels, over the 4096x4096 limit"),
    ([(f"img{i}.png", png()) for i in range(33)], 400, "over the limit of 32"),
    ([], 400, "no image in the request"),
], ids=["not-an-image", "empty", "truncated", "over-10-MB", "over-4096-pixels", "over-32-files", "no-files"])
def test_bad_input_is_a_4xx_with_a_plain_message(server, files, status, words):
    got, answer = post_images(server.url, files)
    assert got == status and words in answer["detail"], answer
    assert request(server.url + "/health")[0] == 200  # and the server carries on


def test_exactly_32_files_are_accepted(server):
    status, answer = post_images(server.url, [(f"img{i}.png", png()) for i in range(32)])
    assert status == 200 and len(answer["results"]) == 32


def test_a_checkpoint_that_cannot_be_loaded_stops_the_server_at_start(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    for name, words in (("empty.pt", "is empty"), ("garbage.pt", "refusing to run code"),
                        ("missing.pt", "does not exist")):
        path = tmp_path / name
        done = subprocess.run([sys.executable, "-m", "helpers", "serve", str(path), "--port", str(free_port())],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "cannot serve" in done.stderr and words in done.stderr, done.stderr


# --------------------------------------------------------------------------- the page, in a browser

def test_the_page_needs_no_network():
    assert "http://" not in PAGE and "https://" not in PAGE and "//cdn" not in PAGE


def test_the_page_shows_the_top5_bars_and_the_heat_map(server, browser, photos, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    folder, rel, rows = photos
    browser.get(server.url + "/")
    WebDriverWait(browser, 30).until(lambda d: "parameters" in d.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(folder / rel[0]))
    heat_map_shown = ("const h = document.querySelector('img.heatmap');"
                      "return h !== null && h.complete && h.naturalWidth > 0;")
    WebDriverWait(browser, 60).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".bar-row")) == 5
                                     and d.execute_script(heat_map_shown))
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".bar-row .name")]
    assert names == [rows[rel[0]][f"class_{i}"] for i in range(1, 6)]
    first = browser.find_element(By.CSS_SELECTOR, ".bar-row .pct").text
    assert first == f"{100 * float(rows[rel[0]]['prob_1']):.1f}%"
    shot = tmp_path / "page.png"
    assert browser.save_screenshot(str(shot)) and Image.open(shot).size[0] > 0
    assert browser.find_element(By.ID, "status").text == ""  # no error shown
