"""A real MLflow tracking server on 127.0.0.1: a reduced `python -m helpers train` run logs to it
(MLFLOW_TRACKING_URI) and the run is read back over the server's REST API."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("mlflow")
pytest.importorskip("flask", reason="the MLflow server comes with the full mlflow package, not mlflow-skinny")

from helpers.config import PROJECT_ROOT  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, path: str, **query) -> dict:
    with urllib.request.urlopen(f"{url}{path}?{urllib.parse.urlencode(query)}", timeout=30) as response:
        return json.loads(response.read())


def _post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture
def server(tmp_path):
    """`mlflow server` on a free port of 127.0.0.1 with its own SQLite store; stopped by its process id."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    mlflow = Path(sys.executable).with_name("mlflow")
    process = subprocess.Popen(
        [str(mlflow) if mlflow.exists() else "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "server-artifacts"), "--workers", "1"],
        cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the MLflow server did not start: " + (tmp_path / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and the workers it started, by its process group
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_a_reduced_run_is_logged_to_the_server_and_read_back_over_rest(server, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_CIFAR10", "COURSE_CIFAR100")}
    env.update(COURSE_FAST="1", COURSE_OFFLINE="1", COURSE_DATA_DIR=str(tmp_path / "data"), OMP_NUM_THREADS="1",
               MPLBACKEND="Agg", PYTHONPATH=str(PROJECT_ROOT), MLFLOW_TRACKING_URI=server)
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "helpers", "train", "--dataset", "synthetic", "--model", "mlp",
                             "--epochs", "2", "--out", str(out), "--no-progress"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists()  # MLFLOW_TRACKING_URI wins over the local store

    experiment = _get(server, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="mlp")["experiment"]
    (run,) = _post(server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    metrics = json.loads((out / "metrics.json").read_text())
    assert params["model.name"] == "mlp" and params["schedule.epochs"] == "2"
    assert params["optim.lr"] == str(metrics["config"]["optim"]["lr"])
    assert run["info"]["status"] == "FINISHED"
    history = _get(server, "/api/2.0/mlflow/metrics/get-history", run_id=run["info"]["run_id"], metric_key="train_loss")
    losses = [m["value"] for m in sorted(history["metrics"], key=lambda m: m["step"])]
    recorded = json.loads((out / "history.json").read_text())
    assert losses == pytest.approx([row["train_loss"] for row in recorded])
    artifacts = _get(server, "/api/2.0/mlflow/artifacts/list", run_id=run["info"]["run_id"])
    assert {"checkpoint.pt", "metrics.json", "history.json"} <= {f["path"] for f in artifacts.get("files", [])}
