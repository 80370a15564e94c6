"""MLflow tracking for training runs: params once, metrics once per epoch, artifacts at the end.

The default store needs no server: an SQLite database `mlflow.db` and an `mlartifacts/` folder in
the run's output root (config.tracking.root); `config.tracking.uri` or the environment variable
MLFLOW_TRACKING_URI points it elsewhere (a shared server). Browse the local store with
`mlflow ui --backend-store-uri sqlite:///out/mlflow.db`.

Tracking must never cost a run: MLflow is imported only when a run is tracked, every call is
timed (`Tracker.seconds`, for benchmarks/train_speed.py), and a failure (MLflow missing, a store
that cannot be written, a server that is down) warns once and switches tracking off.
"""
from __future__ import annotations

import json
import math
import tempfile
import time
import warnings
from pathlib import Path

PARAM_LIMIT = 6000   # MLflow's longest param value
METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s", "seconds")


def store_uri(config) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment or None): MLFLOW_TRACKING_URI, else
    config.tracking.uri, else SQLite in config.tracking.root (default: ./out)."""
    from ..settings import env
    uri = env("MLFLOW_TRACKING_URI") or config.tracking.uri
    if uri:
        return uri, None
    root = Path(config.tracking.root or Path.cwd() / "out").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", (root / "mlartifacts").as_uri()


def _param_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:PARAM_LIMIT]


class Tracker:
    """One MLflow run. `start(config)` logs the flattened config as params; `log_epoch(row)` the
    epoch's metrics (step = epoch, queued: `end` waits for them); `log_metrics`, `log_artifact(s)`;
    `end(status)`. Each call adds its time to `seconds` (per epoch: `epoch_seconds`); any failure
    warns and disables it."""

    def __init__(self):
        self.client = None
        self.run_id = None
        self.enabled = True
        self.seconds = 0.0
        self.epoch_seconds: list[float] = []
        self.owned_by_fit = False
        self._pending = []  # asynchronous metric logging still in flight (waited for in `end`)

    def _call(self, what: str, fn, *args, **kwargs):
        """Run one MLflow call, timed; on failure warn once and stop tracking."""
        if not self.enabled:
            return None
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MLflow's and SQLAlchemy's deprecation notices
                return fn(*args, **kwargs)
        except Exception as exc:  # tracking never stops training
            self.enabled = False
            warnings.warn(f"MLflow tracking failed while {what} ({type(exc).__name__}: {str(exc)[:300]}); "
                          "training goes on without tracking", RuntimeWarning, stacklevel=3)
            return None
        finally:
            self.seconds += time.perf_counter() - t0

    @property
    def uri(self) -> str | None:
        return getattr(self.client, "tracking_uri", None) if self.client is not None else None

    def start(self, config, run_name: str | None = None) -> "Tracker":
        """Open the run in the config's store and experiment and log the config as params."""
        from .config import flatten
        self._call("starting the run", self._start, config, run_name)
        if self.run_id is not None:
            from mlflow.entities import Param
            params = [Param(k, _param_value(v)) for k, v in sorted(flatten(config).items())]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self._call("logging the config", self.client.log_batch, self.run_id, params=params[i:i + 100])
        return self

    def _start(self, config, run_name):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise RuntimeError("MLflow is not installed (pip install mlflow-skinny)") from None
        uri, artifacts = store_uri(config)
        self.client = MlflowClient(tracking_uri=uri)
        name = config.tracking.experiment or config.name or "course"
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self.client.create_experiment(name, artifact_location=artifacts))
        tags = {"model": str(config.model.name), "dataset": str(config.data.name)}
        run = self.client.create_run(experiment_id, run_name=run_name or config.name, tags=tags)
        self.run_id = run.info.run_id

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        """Log numbers (None and non-numbers are left out) at `step`, in one call that MLflow queues
        and writes on a thread of its own (so the training loop does not wait for the store)."""
        if self.run_id is None or not self.enabled:
            return
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        pending = self._call("logging metrics", self.client.log_batch, self.run_id, metrics=batch, synchronous=False)
        if pending is not None:
            self._pending.append(pending)

    def log_epoch(self, row: dict) -> None:
        """The epoch's losses, accuracies, lr and images/s, step = the epoch number (once per epoch)."""
        before = self.seconds
        self.log_metrics({k: row.get(k) for k in METRICS}, step=int(row["epoch"]))
        self.epoch_seconds.append(self.seconds - before)

    def log_artifact(self, path, folder: str | None = None) -> None:
        if self.run_id is not None and Path(path).exists():
            self._call(f"storing {Path(path).name}", self.client.log_artifact, self.run_id, str(path), folder)

    def log_artifacts(self, paths, folder: str | None = None) -> None:
        for path in paths:
            self.log_artifact(path, folder)

    def log_json(self, data, name: str) -> None:
        """Store `data` as the JSON artifact `name` (written to a temporary folder first)."""
        if self.run_id is None or not self.enabled:
            return
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(data, indent=1, default=str))
            self.log_artifact(path)

    def end_fit(self, history, config) -> None:
        """What fit logs when it finishes: the history and the checkpoint; ends a run fit opened."""
        self.log_json(history.to_list(), "history.json")
        if config.checkpoint.path:
            self.log_artifact(config.checkpoint.path)
        self.close("FINISHED")

    def close(self, status: str) -> None:
        """End the run if fit opened it (a run handed to fit is ended by whoever opened it)."""
        if self.owned_by_fit:
            self.end(status)

    def end(self, status: str = "FINISHED") -> None:
        """Close the run (FINISHED, FAILED or KILLED); later calls do nothing."""
        if self.run_id is not None and self.enabled:
            for pending in self._pending:
                self._call("writing metrics", pending.wait)
            self._pending.clear()
            self._call("closing the run", self.client.set_terminated, self.run_id, status)
        self.enabled = False


class NoTracker(Tracker):
    """The tracker of an untracked run: every call does nothing."""

    def __init__(self):
        super().__init__()
        self.enabled = False

    def start(self, config, run_name=None):
        return self


def start_tracking(track, config) -> Tracker:
    """The tracker `fit` logs into: `track` itself when it is a Tracker (its owner ends it), a new
    run of its own when `track` is True or the config enables tracking, else NoTracker()."""
    if isinstance(track, Tracker):
        return track
    if not (track or config.tracking.enabled):
        return NoTracker()
    tracker = Tracker().start(config)
    tracker.owned_by_fit = True
    return tracker
