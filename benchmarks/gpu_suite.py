"""One call that measures every GPU claim of the kit, most important first (issue 15).

Each part runs in a fresh Python process under its own time cap, in this order, so that a run cut
off early still holds the most important figures:

  1. fastnet, fastnet_compile: the reference fast recipe (FastNet with the settings of
     `python -m helpers train --model fastnet`) over --seeds seeds, eager and with torch.compile:
     test accuracy mean and std, seconds per run (model, whitening, training, the TTA test pass);
  2. pipelines: ResNet-18 seconds per epoch, the conventional per-image pipeline (PIL transforms
     in a DataLoader, fp32, batch 128; benchmarks/train_speed.py's) against `fit` (GpuLoader, bf16,
     batch 512), one epoch of each per round, the first round a warm-up;
  3. resnet18: ResNet-18 with `fit` and the course defaults, test accuracy after every epoch: the
     time and epochs to 93% (a longer schedule is tried when 16 epochs fall short and time allows);
  4. notebook_04, notebook_06: the code cells of source/04_training and source/06_challenge run
     in order in a fresh process in full mode, read from the .ipynb as JSON (see notebook_cells);
  5. scoring: the checkpoint the 06 notebook saved, scored as the grader scores it: in-process
     (score.evaluate_checkpoint), then in the sandbox when bubblewrap is installed; `path` says which
     one the headline seconds come from.

A part that fails is recorded with its error and the suite goes on; a part stops at its cap
(between runs where it can, else it is stopped) and keeps the figures it had. All parts share
--budget seconds (default 470: 8 minutes with room to spare); the 06 notebook, the longest,
takes what the parts before it left, less a reserve for scoring. Needs only torch, torchvision,
numpy, Pillow, matplotlib and tqdm.

    COURSE_CIFAR10=data/cifar10-webp.tar.gz PYTHONPATH=. python benchmarks/gpu_suite.py --out out/gpu_suite
    PYTHONPATH=. python benchmarks/gpu_suite.py --dry-run      # every part, tiny, on the CPU

Notebooks: every code cell runs as written, in one namespace, with the notebook's folder a work
folder of its own (its checkpoints land there), COURSE_FAST=0, COURSE_OFFLINE=1, MPLBACKEND=Agg
and no NBGRADER_EXECUTION (so the grading canary does nothing and training cells train). The
source notebooks hold the solutions between `### BEGIN SOLUTION` / `### END SOLUTION`, which are
comments, so the solutions run; the visible test cells run too (helpers.checks needs no
nbgrader). IPython lines (`%magic`, `!shell`) are dropped, a `%%` cell magic skips its cell, a
cell that imports a Jupyter-only module (nbgrader, IPython, ...) is skipped with a note, and the
06 notebook's CIFAR-100 cells are skipped unless $COURSE_CIFAR100 names an archive.

Data: $COURSE_CIFAR10 (and $COURSE_CIFAR100), never downloaded; without CIFAR-10 the generated
dataset stands in and the accuracies say nothing about CIFAR-10. --dry-run uses the generated
dataset in reduced mode at tiny sizes (see DRY): its figures only show that every part runs.
Writes gpu_suite.json and gpu_suite.md (rewritten after every part) and logs/ under --out; the
last line printed is the headline.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = Path(__file__).resolve().parent
for _path in (str(ROOT), str(BENCHMARKS)):  # helpers/ and the shared baseline, whatever the cwd
    if _path not in sys.path:
        sys.path.insert(0, _path)

# (name, issue group, title, cap in seconds full, cap in seconds dry run), in the order they run. The
# dry run takes about 35 s on an idle 2-core CPU; its caps leave room for a machine shared with others.
PARTS = [
    ("fastnet", 1, "FastNet reference recipe, eager", 75, 40),
    ("fastnet_compile", 1, "FastNet reference recipe, torch.compile", 100, 60),
    ("pipelines", 2, "ResNet-18 s/epoch: conventional pipeline vs fit", 60, 40),
    ("resnet18", 3, "ResNet-18 with fit to 93% test accuracy", 100, 40),
    ("notebook_04", 4, "source/04_training notebook, full mode", 110, 60),
    ("notebook_06", 4, "source/06_challenge notebook, full mode", None, None),  # what the others left
    ("scoring", 5, "scoring one checkpoint", 40, 40),
]
PART_NAMES = [p[0] for p in PARTS]
GROUP = {name: group for name, group, _, _, _ in PARTS}
TITLE = {name: title for name, _, title, _, _ in PARTS}
RESERVE = 40  # seconds kept back for the scoring part, whatever the parts before it take

# Full run and dry run sizes. images/test_images None: the whole split.
# The dry run is a check that every part runs, sized for a busy 2-core CPU: fiveconv_bn instead of
# ResNet-18 (a ResNet-18 step takes seconds there), a narrow FastNet, torch.compile with the
# aot_eager backend (dynamo and AOT autograd, but no inductor code generation, which alone takes
# minutes on such a CPU) and the notebooks' reduced mode cut to 30 training and 10 test images a class.
FULL = {"seeds": 5, "fastnet_epochs": None, "fastnet_kwargs": {}, "compile_backend": None, "images": None,
        "test_images": None, "rounds": 3, "model": "resnet18", "resnet_epochs": [16, 24], "target": 0.93,
        "batch_cap": None, "reduced_per_class": None}
DRY = {"seeds": 2, "fastnet_epochs": 1, "fastnet_kwargs": {"widths": [16, 32, 32]}, "compile_backend": "aot_eager",
       "images": 200, "test_images": 100, "rounds": 2, "model": "fiveconv_bn", "resnet_epochs": [1, 2],
       "target": 0.93, "batch_cap": 64, "reduced_per_class": (30, 10)}

NOTEBOOKS = {"notebook_04": "04_training", "notebook_06": "06_challenge"}
# Modules a notebook cell may want that a bare GPU machine lacks: such a cell is skipped, not fatal.
JUPYTER_ONLY = {"nbgrader", "IPython", "ipywidgets", "ipykernel", "nbformat", "nbclient", "sklearn", "jupyter"}
# The 06 notebook's CIFAR-100 cells, run only when $COURSE_CIFAR100 names an existing archive.
CIFAR100_CELL = re.compile(r"\b(data100|model100|history100|cifar100_recipe)\b")


# =========================================================================== the parent

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "out" / "gpu_suite", help="output folder (default out/gpu_suite)")
    p.add_argument("--dry-run", action="store_true", help="every part, tiny, on the CPU and the generated dataset")
    p.add_argument("--budget", type=float, help="seconds for all parts (default 470; dry run 175)")
    p.add_argument("--parts", nargs="+", choices=PART_NAMES, help="run only these parts (default: all)")
    p.add_argument("--cap", action="append", default=[], type=cap_arg, metavar="PART=SECONDS",
                   help="change one part's time cap, e.g. --cap notebook_04=90 (repeatable)")
    p.add_argument("--seeds", type=int, help="FastNet runs per variant (default 5)")
    p.add_argument("--workers", type=int, help="DataLoader workers of the conventional pipeline "
                                                 "(default min(4, cores), as benchmarks/train_speed.py)")
    p.add_argument("--device", help="default: cuda when present, else cpu (the dry run always uses the CPU)")
    p.add_argument("--keep-work", action="store_true", help="keep the checkpoints and notebook work folders")
    # internal: one part in this process (the parent starts these)
    p.add_argument("--child", choices=PART_NAMES, help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child-cap", type=float, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def cap_arg(text: str) -> tuple[str, float]:
    """'part=seconds' -> (part, seconds), refused with the valid part names when it is not that."""
    name, sep, value = text.partition("=")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not sep or name not in PART_NAMES or seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected PART=SECONDS with PART one of {', '.join(PART_NAMES)}, "
                                         f"got {text!r}")
    return name, seconds


def machine_info(device: str) -> dict:
    """What the figures were measured on: host, CPU, GPU, versions, date."""
    import torch
    import torchvision
    info = {"date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "host": platform.node(),
            "platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "cuda": torch.version.cuda, "cudnn": None,
            "device": device, "gpu": None, "gpu_memory_gib": None, "commit": None}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cudnn=torch.backends.cudnn.version())
    try:
        info["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                        text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def prepare_data(dry_run: bool) -> dict:
    """Decode and cache the datasets once, before the parts (each part then loads the cache in well
    under a second): {name: the dataset the parts train on, cifar10/cifar100: its source or None}."""
    from helpers.data import DataError, load_dataset
    found = {"name": "cifar10", "cifar10": None, "cifar100": None}
    for name, env in (("cifar10", "COURSE_CIFAR10"), ("cifar100", "COURSE_CIFAR100")):
        if dry_run or (name == "cifar100" and not cifar100_present()):
            continue
        try:
            found[name] = load_dataset(name, download=False, verbose=True).source
        except DataError as exc:
            print(f"NOTE: {name} not available ({str(exc).splitlines()[0]}); set ${env} to its archive")
    if found["cifar10"] is None:
        found["name"] = "synthetic"
        found["synthetic"] = load_dataset("synthetic").source
        if not dry_run:
            print("NOTE: without CIFAR-10 the generated dataset stands in: the accuracies are not CIFAR-10's")
    return found


def cifar100_present() -> bool:
    """True when $COURSE_CIFAR100 names an existing archive or folder (the CIFAR-100 cells then run)."""
    path = os.environ.get("COURSE_CIFAR100")
    return bool(path) and Path(path).expanduser().exists()


def part_row(name: str, status: str, seconds: float, cap: float, **fields) -> dict:
    """A part's row in the report, every key present."""
    row = {"part": name, "group": GROUP[name], "title": TITLE[name], "status": status, "seconds": round(seconds, 1),
           "cap_seconds": round(cap, 1), "error": None, "figures": {}, "notes": [], "log": None}
    row.update(fields)
    return row


def run_part(name: str, cap: float, args, log_dir: Path) -> dict:
    """Run one part in a fresh process for at most `cap` seconds; its row, whatever happened. The part
    writes its figures to a JSON file as it goes, so a part stopped at its cap keeps what it had."""
    result_file, log_file = log_dir / f"{name}.json", log_dir / f"{name}.log"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--child-out", str(result_file),
           "--child-cap", f"{cap:.1f}", "--out", str(args.out)]
    for flag, value in (("--seeds", args.seeds), ("--workers", args.workers), ("--device", args.device)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.dry_run:
        cmd.append("--dry-run")
    print(f"\n[{name}] {TITLE[name]}: cap {cap:.0f} s", flush=True)
    start = time.perf_counter()
    stopped = False
    with open(log_file, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(args.dry_run), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            proc.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            stopped = True
            stop_process_group(proc)
    seconds = time.perf_counter() - start
    try:
        child = json.loads(result_file.read_text())
    except (OSError, ValueError):
        child = {}
    if stopped:
        status, error = "timeout", f"stopped at its cap of {cap:.0f} s; the figures are those it had by then"
    elif proc.returncode != 0:
        status = "error"
        error = child.get("error") or f"exit code {proc.returncode}: {last_error_line(log_file)}"
    else:
        status, error = child.get("status") or "error", child.get("error")
    row = part_row(name, status, seconds, cap, error=error, figures=child.get("figures", {}),
                   notes=child.get("notes", []), log=str(log_file.relative_to(args.out)))
    print(f"[{name}] {status} in {seconds:.1f} s" + (f": {error}" if error else ""), flush=True)
    return row


def child_env(dry_run: bool) -> dict:
    """The part's environment: offline (the GPU machine has no network), mode, a headless plot backend."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(COURSE_OFFLINE="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env["COURSE_FAST"] = "1" if dry_run else "0"
    env.pop("NBGRADER_EXECUTION", None)  # never autograde mode: the notebooks must train
    if dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run is a CPU run, even on a GPU machine
        env["OMP_NUM_THREADS"] = "1"  # tiny operations: one thread each is fastest, above all on a busy machine
        env.pop("COURSE_CIFAR10", None)
        env.pop("COURSE_CIFAR100", None)
    return env


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM to the part's process group (its DataLoader workers included), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def last_error_line(log_file: Path) -> str:
    """The log's last non-empty line: for a part that died without writing its result (e.g. a crash)."""
    lines = [line for line in log_file.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def part_cap(name: str, args, left: float) -> float:
    """The part's cap: --cap when given, else its default; never more than the `left` seconds. The
    06 notebook, the longest part, takes whatever the parts before it left."""
    caps = dict(args.cap)
    defaults = {n: (dry if args.dry_run else full) for n, _, _, full, dry in PARTS}
    if name in caps:
        return min(caps[name], left)
    return left if name == "notebook_06" else min(defaults[name], left)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    if args.child:
        return child_main(args)
    if args.dry_run:
        os.environ.update(COURSE_FAST="1", COURSE_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
        os.environ.pop("COURSE_CIFAR10", None)
        os.environ.pop("COURSE_CIFAR100", None)
    else:
        os.environ.setdefault("COURSE_OFFLINE", "1")  # the GPU machine has no network: never try a download
    import torch
    device = "cpu" if args.dry_run else (args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    budget = args.budget or (175.0 if args.dry_run else 470.0)
    log_dir = args.out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.out / "work", ignore_errors=True)  # no checkpoint of an earlier run may be scored
    start = time.perf_counter()
    report = {"suite": "gpu_suite", "dry_run": args.dry_run, "budget_seconds": budget,
              "machine": machine_info(device), "data": {}, "parts": [], "headline": ""}
    m = report["machine"]
    print(f"gpu_suite{' DRY RUN (tiny, CPU; the figures mean nothing)' if args.dry_run else ''}: "
          f"{m['gpu'] or m['cpu']}, torch {m['torch']} (CUDA {m['cuda']}), {m['date_utc']} UTC, budget {budget:.0f} s",
          flush=True)
    if device != "cuda" and not args.dry_run:
        print("NOTE: no CUDA device: the full configuration runs on the CPU and will mostly stop at its caps")
    report["data"] = prepare_data(args.dry_run)
    report["data"]["prepare_seconds"] = round(time.perf_counter() - start, 1)
    chosen = args.parts or PART_NAMES
    for name in PART_NAMES:
        if name not in chosen:
            continue
        reserve = RESERVE if "scoring" in chosen and name != "scoring" else 0
        cap = part_cap(name, args, budget - (time.perf_counter() - start) - reserve)
        if cap < min(10, dict(args.cap).get(name, 10)):
            report["parts"].append(part_row(name, "skipped", 0, max(cap, 0), error="no time left in the budget"))
        else:
            report["parts"].append(run_part(name, cap, args, log_dir))
        write_report(report, args.out)
    report["total_seconds"] = round(time.perf_counter() - start, 1)
    report["headline"] = headline(report)
    write_report(report, args.out)
    if not args.keep_work:
        shutil.rmtree(args.out / "work", ignore_errors=True)
    print(f"\nwrote {args.out / 'gpu_suite.json'} and {args.out / 'gpu_suite.md'} ({report['total_seconds']:.0f} s)")
    print(report["headline"], flush=True)
    return 0


# =========================================================================== results

def write_report(report: dict, out: Path) -> None:
    """gpu_suite.json and gpu_suite.md, each written atomically (rewritten after every part)."""
    from helpers.atomic import atomic_write
    with atomic_write(out / "gpu_suite.json", "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    with atomic_write(out / "gpu_suite.md", "w") as f:
        f.write(markdown(report))


def fmt(value) -> str:
    """A figure as table text: accuracies with 4 decimals, other numbers with 2, lists joined."""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}"
    if isinstance(value, list):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def markdown(report: dict) -> str:
    """The Markdown table: machine, versions and date on top, then one row per figure."""
    m, data = report["machine"], report["data"]
    lines = [f"# gpu_suite{' (DRY RUN: tiny CPU configuration, figures meaningless)' if report['dry_run'] else ''}",
             "",
             f"- date (UTC): {m['date_utc']}; commit {m['commit'] or 'unknown'}",
             f"- machine: {m['host']}, {m['cpu_count']} CPUs ({m['cpu']}), {m['platform']}",
             f"- GPU: {m['gpu'] or 'none'}" + (f", {m['gpu_memory_gib']} GiB" if m["gpu_memory_gib"] else ""),
             f"- torch {m['torch']}, torchvision {m['torchvision']}, CUDA {m['cuda']}, cuDNN {m['cudnn']}, "
             f"Python {m['python']}",
             f"- data: {data.get('name')}; CIFAR-10 {data.get('cifar10') or 'absent'}; "
             f"CIFAR-100 {data.get('cifar100') or 'absent (the 06 notebook skips its CIFAR-100 cells)'}",
             f"- budget {report['budget_seconds']:.0f} s; total {report.get('total_seconds', '(running)')} s",
             "", "| # | part | status | seconds (cap) | figure | value |", "|---|---|---|---|---|---|"]
    for row in report["parts"]:
        figures = row["figures"] or {"-": "-"}
        for j, (key, value) in enumerate(figures.items()):
            head = (f"| {row['group']} | {row['part']} | {row['status']} | {row['seconds']} ({row['cap_seconds']}) "
                    if j == 0 else "| | | | ")
            lines.append(f"{head}| {key} | {fmt(value)} |")
        for text in ([row["error"]] if row["error"] else []) + row["notes"]:
            lines.append(f"| | | | | note | {text.replace('|', '/')} |")
    lines += ["", report.get("headline") or "", ""]
    return "\n".join(lines)


def headline(report: dict) -> str:
    """One line with the figures the README promises."""
    by = {row["part"]: row for row in report["parts"]}
    m = report["machine"]
    bits = []

    def fig(part, key):
        return (by.get(part) or {}).get("figures", {}).get(key)

    for part, label in (("fastnet", "fastnet"), ("fastnet_compile", "compiled")):
        acc, sec = fig(part, "accuracy_mean"), fig(part, "seconds_mean")
        if acc is not None and sec is not None:
            bits.append(f"{label} {100 * acc:.2f}±{100 * (fig(part, 'accuracy_std') or 0):.2f}% in {sec:.2f} s "
                        f"({fig(part, 'runs')} seeds)")
        elif part in by:
            bits.append(f"{label} {by[part]['status']}")
    if fig("pipelines", "ratio") is not None:
        conventional = fig("pipelines", "conventional_s_per_epoch")
        bits.append(f"{fig('pipelines', 'model')} s/epoch conventional {conventional:.2f}"
                    f" vs fit {fig('pipelines', 'fit_s_per_epoch'):.2f} = {fig('pipelines', 'ratio'):.1f}x")
    elif "pipelines" in by:
        bits.append(f"pipelines {by['pipelines']['status']}")
    if fig("resnet18", "final_accuracy") is not None:
        reached = fig("resnet18", "seconds_to_target")
        target = 100 * (fig("resnet18", "target") or 0.93)
        model = fig("resnet18", "model")
        bits.append(f"{model} {target:.0f}% in {reached:.1f} s ({fig('resnet18', 'epochs_to_target')} epochs)"
                    if reached is not None else
                    f"{model} {100 * fig('resnet18', 'final_accuracy'):.2f}% (< {target:.0f}%) after "
                    f"{fig('resnet18', 'epochs')} epochs")
    elif "resnet18" in by:
        bits.append(f"resnet18 {by['resnet18']['status']}")
    for part in ("notebook_04", "notebook_06"):
        if part in by:
            acc = fig(part, "test_accuracy") if part == "notebook_04" else fig(part, "val_accuracy")
            what = f", {'test' if part == 'notebook_04' else 'val'} {100 * acc:.2f}%" if acc is not None else ""
            bits.append(f"notebook {part[-2:]} {by[part]['status']} {by[part]['seconds']:.0f} s{what}")
    if fig("scoring", "seconds") is not None:
        bits.append(f"scoring {fig('scoring', 'seconds'):.1f} s ({fig('scoring', 'path')})")
    elif "scoring" in by:
        bits.append(f"scoring {by['scoring']['status']}")
    where = "DRY RUN cpu" if report["dry_run"] else (m["gpu"] or "no GPU")
    return f"HEADLINE gpu_suite {where}: " + " | ".join(bits) + f" | data {report['data'].get('name')}"


# =========================================================================== the parts (child processes)

class Part:
    """What a part needs: its settings, device, data, a deadline, and `save` for partial figures."""

    def __init__(self, args):
        import torch
        self.args = args
        self.name = args.child
        self.dry = args.dry_run
        self.cfg = dict(DRY if self.dry else FULL)
        if args.seeds:
            self.cfg["seeds"] = args.seeds
        self.device = torch.device("cpu" if self.dry else (args.device or ("cuda" if torch.cuda.is_available()
                                                                           else "cpu")))
        self.start = time.perf_counter()
        self.cap = args.child_cap or 60.0
        self.work = Path(args.out).resolve() / "work"
        self.work.mkdir(parents=True, exist_ok=True)
        self.result = {"status": "running", "error": None, "figures": {}, "notes": []}
        self.capped = False  # set when the part stopped early, with fewer runs than asked, to keep its cap
        self._data = None
        if self.dry:
            torch.set_num_threads(1)

    def left(self) -> float:
        """Seconds left before the cap, less a margin to write the results."""
        return self.cap - (time.perf_counter() - self.start) - 3.0

    def fits(self, seconds: float) -> bool:
        """Whether something that takes `seconds` still ends before the cap."""
        return seconds < self.left()

    def save(self, **figures) -> None:
        """Add figures and write the result file now (atomically): a part stopped later keeps them."""
        from helpers.atomic import write_json
        self.result["figures"].update(figures)
        write_json(self.args.child_out, self.result)

    def note(self, text: str) -> None:
        """Print and keep a note for the report."""
        print(f"NOTE: {text}", flush=True)
        self.result["notes"].append(text)
        self.save()

    def sync(self) -> None:
        """Wait for the GPU before reading a clock."""
        import torch
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def data(self):
        """CIFAR-10 (never downloaded), else the generated dataset; the dry run's tiny subset."""
        if self._data is None:
            from helpers.data import DataError, ImageData, load_dataset
            from helpers.data.split import stratified_subset
            try:
                data = (load_dataset("synthetic") if self.dry else load_dataset("cifar10", download=False))
            except DataError:
                self.note("CIFAR-10 not found: the generated dataset stands in (accuracies are not CIFAR-10's)")
                data = load_dataset("synthetic")
            if self.cfg["images"]:
                tr = stratified_subset(data.train_labels, self.cfg["images"] // data.num_classes, seed=0)
                te = stratified_subset(data.test_labels, self.cfg["test_images"] // data.num_classes, seed=0)
                data = ImageData(data.name, data.classes, data.train_images[tr], data.train_labels[tr],
                                 data.test_images[te], data.test_labels[te], source=data.source + " (subset)")
            self.result["figures"]["data"] = (f"{data.name}, {len(data.train_labels)} train / "
                                              f"{len(data.test_labels)} test")
            self._data = data
        return self._data

    def batch(self, size: int) -> int:
        """The batch size to use: `size`, at most the dry run's cap."""
        return min(size, self.cfg["batch_cap"]) if self.cfg["batch_cap"] else size


def child_main(args) -> int:
    """Run one part; its result file says ok, or error with the exception (the traceback is in the log)."""
    import traceback
    part = Part(args)
    part.save()
    try:
        PART_FUNCTIONS[args.child](part)
        part.result["status"] = "capped" if part.capped else "ok"
    except Exception as exc:
        traceback.print_exc()
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        part.result.update(status="error", error=f"{type(exc).__name__}: {first}")
    part.save()
    return 0


def stop_early(part: Part, why: str) -> None:
    """Record that the part stopped before its cap with fewer runs than asked (status "capped")."""
    part.capped = True
    part.note(why)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def fastnet_part(part: Part, compile: bool = False) -> None:
    """The reference recipe over several seeds, after one warm-up run (cuDNN autotuning; compiling)."""
    import torch

    from helpers.eval.evaluate import predict
    from helpers.models import build_model
    from helpers.train import fit, init_from_data, make_loaders, make_optimizer
    from helpers.commands.train import settings_for
    data = part.data()
    s = settings_for("fastnet")
    if part.cfg["fastnet_epochs"]:
        s["epochs"] = part.cfg["fastnet_epochs"]
    s["batch_size"] = part.batch(s["batch_size"])
    train, _, mean, std = make_loaders(data, batch_size=s["batch_size"], val_fraction=0.0, device=part.device,
                                       crop_padding=s["crop_padding"])
    part.save(epochs=s["epochs"], batch_size=s["batch_size"], compile=compile)
    if compile and part.cfg["compile_backend"]:  # fit calls torch.compile(model): give it the dry run's backend
        torch.compile = functools.partial(torch.compile, backend=part.cfg["compile_backend"])
        part.save(compile_backend=part.cfg["compile_backend"])
    accs, secs, fit_secs = [], [], []
    for seed in [-1] + list(range(part.cfg["seeds"])):
        if secs and not part.fits(max(secs) * 1.2):
            stop_early(part, f"stopped after {len(secs)} of {part.cfg['seeds']} seeds: the next would pass the cap")
            break
        train.seed = max(seed, 0)
        part.sync()
        start = time.perf_counter()
        torch.manual_seed(max(seed, 0))
        model = build_model("fastnet", num_classes=data.num_classes, **part.cfg["fastnet_kwargs"]).to(part.device)
        init_from_data(model, data.train_images, mean, std)
        opt = make_optimizer(model, "sgd", s["lr"], s["momentum"], True, s["weight_decay"], s["norm_bias_lr_scale"])
        history = fit(model, train, None, epochs=s["epochs"], optimizer=opt, schedule=s["schedule"],
                      warmup=s["warmup"], label_smoothing=s["label_smoothing"], seed=max(seed, 0), progress=False,
                      compile=compile)
        acc = predict(model, data.test_images, data.test_labels, batch_size=1024, mean=mean, std=std,
                      tta=s["tta"])[1]
        part.sync()
        seconds = time.perf_counter() - start
        if seed < 0:
            part.save(warmup_seconds=round(seconds, 2), warmup_accuracy=acc)
            print(f"fastnet warm-up{' (compiling)' if compile else ''}: {acc:.4f} in {seconds:.2f} s", flush=True)
            continue
        accs.append(acc)
        secs.append(seconds)
        fit_secs.append(sum(row["seconds"] for row in history))
        print(f"fastnet seed {seed}: test accuracy {acc:.4f} in {seconds:.2f} s", flush=True)
        (acc_mean, acc_std), (sec_mean, sec_std) = mean_std(accs), mean_std(secs)
        part.save(runs=len(accs), accuracy=[round(a, 4) for a in accs], seconds=[round(x, 2) for x in secs],
                  accuracy_mean=acc_mean, accuracy_std=acc_std, seconds_mean=sec_mean, seconds_std=sec_std,
                  fit_seconds_mean=statistics.mean(fit_secs))
        if seed == 0 and not compile:  # a real checkpoint, should the 06 notebook not leave one for scoring
            from helpers.grading.challenge import save_challenge_checkpoint
            save_challenge_checkpoint(part.work / "fastnet_model.pt", model, history=history, mean=mean, std=std,
                                      dataset=data)


def pipelines_part(part: Part) -> None:
    """Seconds per epoch of the conventional pipeline and of fit, one epoch of each per round; the
    first round is a warm-up (worker start-up, cuDNN autotuning), left out of the medians."""
    from helpers.data.split import channel_mean_std
    from train_speed import Conventional, WithFit
    data = part.data()
    workers = part.args.workers if part.args.workers is not None else min(4, os.cpu_count() or 1)
    model = part.cfg["model"]
    fit_batch = part.batch(512)
    mean, std = (tuple(float(v) for v in a) for a in channel_mean_std(data.train_images))
    conventional = Conventional(data, model, part.device, workers, mean, std)
    runners = {"conventional": conventional, "fit": WithFit(data, model, part.device, fit_batch)}
    part.save(model=model, images=int(len(data.train_labels)), workers=workers,
              conventional_batch=conventional.loader.batch_size, fit_batch=fit_batch)
    times = {name: [] for name in runners}
    for r in range(part.cfg["rounds"]):
        if r > 1 and not part.fits(1.2 * sum(t[-1] for t in times.values())):
            stop_early(part, f"stopped after {r} rounds: the next would pass the cap")
            break
        for name, runner in runners.items():
            times[name].append(runner.epoch(r))
            print(f"round {r}: {name} {times[name][-1]:.2f} s/epoch", flush=True)
        medians = {name: statistics.median(t[1:] or t) for name, t in times.items()}
        part.save(rounds=r + 1, conventional_s_per_epoch=medians["conventional"], fit_s_per_epoch=medians["fit"],
                  ratio=medians["conventional"] / medians["fit"],
                  conventional_img_per_s=len(data.train_labels) / medians["conventional"],
                  fit_img_per_s=len(data.train_labels) / medians["fit"])


def resnet18_part(part: Part) -> None:
    """ResNet-18 with fit and the course defaults on all training images, the test accuracy read after
    every epoch: the first epoch at the target gives the time; a longer schedule is tried if none does."""
    import torch

    from helpers.eval.evaluate import predict
    from helpers.data.loader import GpuLoader
    from helpers.models import build_model
    from helpers.train import fit, make_loaders
    from helpers.commands.train import settings_for
    data = part.data()
    s = settings_for("resnet18")  # the course defaults for ResNet-18, whatever model the dry run trains
    batch = part.batch(s["batch_size"])
    target = part.cfg["target"]
    train, _, mean, std = make_loaders(data, batch_size=batch, val_fraction=0.0, device=part.device)
    test = GpuLoader(data.test_images, data.test_labels, batch_size=1024, device=part.device, mean=mean, std=std,
                     train=False)
    part.save(model=part.cfg["model"], target=target, batch_size=batch, lr=s["lr"])
    per_epoch = None
    for epochs in part.cfg["resnet_epochs"]:
        if per_epoch is not None and not part.fits(per_epoch * epochs * 1.1):
            stop_early(part, f"a {epochs}-epoch run would pass the cap ({per_epoch:.1f} s per epoch)")
            break
        part.sync()
        start = time.perf_counter()
        torch.manual_seed(0)
        model = build_model(part.cfg["model"], num_classes=data.num_classes)
        history = fit(model, train, test, epochs=epochs, lr=s["lr"], label_smoothing=s["label_smoothing"],
                      progress=True, seed=0)
        tta_acc = predict(model, data.test_images, data.test_labels, batch_size=1024, mean=mean, std=std,
                          tta="flip")[1]
        part.sync()
        wall = time.perf_counter() - start
        # training seconds per epoch (fit's row "seconds" also counts the test pass after each epoch)
        train_secs = [len(train) * batch / row["images_per_s"] for row in history]
        per_epoch = wall / epochs
        reached = next((i for i, row in enumerate(history) if row["val_acc"] >= target), None)
        part.save(epochs=epochs, test_accuracy_per_epoch=[round(row["val_acc"], 4) for row in history],
                  final_accuracy=history[-1]["val_acc"], final_accuracy_flip_tta=tta_acc, wall_seconds=wall,
                  train_seconds=sum(train_secs), epochs_to_target=None if reached is None else reached + 1,
                  seconds_to_target=None if reached is None else sum(train_secs[:reached + 1]))
        print(f"resnet18, {epochs} epochs: test accuracy {history[-1]['val_acc']:.4f} (flip TTA {tta_acc:.4f}) "
              f"in {wall:.1f} s; target {target:.0%} " + (f"at epoch {reached + 1}" if reached is not None
                                                          else "not reached"), flush=True)
        if reached is not None:
            break


# --------------------------------------------------------------------------- notebooks

def notebook_cells(path: Path, run_cifar100: bool) -> list[dict]:
    """The notebook's code cells in order, as plain Python: {index, id, source, skip (a reason or "")}.
    IPython-only lines (`%magic`, `!shell`) become `pass` (so an indented block still parses); a
    cell magic (`%%...`) and, unless `run_cifar100`, a CIFAR-100 cell get a skip reason."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        grade_id = ((cell.get("metadata") or {}).get("nbgrader") or {}).get("grade_id") or f"cell{i}"
        skip = ""
        if source.lstrip().startswith("%%"):
            skip = "cell magic (IPython only)"
        elif not run_cifar100 and ("cifar100" in grade_id or CIFAR100_CELL.search(source)):
            skip = "CIFAR-100 cell, and no CIFAR-100 archive ($COURSE_CIFAR100)"
        lines = []
        for line in source.splitlines():
            stripped = line.lstrip()
            if stripped.startswith(("%", "!")):
                line = line[:len(line) - len(stripped)] + "pass  # IPython-only line removed: " + stripped[:60]
            lines.append(line)
        cells.append({"index": i, "id": grade_id, "source": "\n".join(lines), "skip": skip})
    return cells


def _figure(namespace: dict, getter):
    """One notebook figure from its namespace, or None while the cells that set it have not run."""
    try:
        value = getter(namespace)
    except Exception:
        return None
    if hasattr(value, "item"):
        value = value.item()
    return value if isinstance(value, (int, float, str, bool)) else None


# What each notebook reports, read from its namespace after every cell.
NOTEBOOK_FIGURES = {
    "04_training": {
        "full_mode": lambda ns: not ns["MODE"].reduced,
        "network": lambda ns: "small CNN" if ns["SMALL"] else "ResNet-18",
        "epochs": lambda ns: len(ns["history"]),
        "train_seconds": lambda ns: sum(row.get("seconds") or 0 for row in ns["history"]),
        "best_val_accuracy": lambda ns: ns["history"].best_val_acc,
        "test_accuracy": lambda ns: ns["test_acc"],
        "sgd_val_accuracy": lambda ns: ns["histories"]["SGD"][-1]["val_acc"],
        "adamw_val_accuracy": lambda ns: ns["histories"]["AdamW"][-1]["val_acc"],
    },
    "06_challenge": {
        "full_mode": lambda ns: not ns["FAST"],
        "model": lambda ns: ns["trained_recipe"]["model"]["name"],
        "epochs": lambda ns: len(ns["history"]),
        "train_seconds": lambda ns: sum(row.get("seconds") or 0 for row in ns["history"]),
        "val_accuracy": lambda ns: ns["history"][-1]["val_acc"],
        "ablation_runs": lambda ns: len(ns["ablation"]) - 1,
        "cifar100_epochs": lambda ns: len(ns["history100"]),
        "cifar100_val_accuracy": lambda ns: ns["history100"][-1]["val_acc"],
        "cifar100_val_macro_f1": lambda ns: ns["val_f1"],
    },
}


def notebook_part(part: Part) -> None:
    """Run a source notebook's code cells in order in this (fresh) process, in a work folder of its own."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    name = NOTEBOOKS[part.name]
    path = ROOT / "source" / name / f"{name}.ipynb"
    run_cifar100 = part.dry or cifar100_present()
    cells = notebook_cells(path, run_cifar100)
    work = part.work / part.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    os.chdir(work)  # the notebook saves its checkpoints beside itself
    if part.cfg["reduced_per_class"]:  # the dry run: an even smaller reduced mode
        import helpers.data
        for key in helpers.data.REDUCED_PER_CLASS:
            helpers.data.REDUCED_PER_CLASS[key] = part.cfg["reduced_per_class"]
    namespace = {"__name__": "__main__"}
    timings, skipped = [], []
    part.save(notebook=str(path.relative_to(ROOT)), code_cells=len(cells), cells_run=0)
    start = time.perf_counter()
    for cell in cells:
        if cell["skip"]:
            skipped.append(f"{cell['id']}: {cell['skip']}")
            part.save(cells_skipped=len(skipped))
            continue
        print(f"--- cell {cell['index']} ({cell['id']})", flush=True)
        t0 = time.perf_counter()
        try:
            exec(compile(cell["source"], f"{name}.ipynb[{cell['index']}]", "exec"), namespace)
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] not in JUPYTER_ONLY:
                part.save(failed_cell=cell["id"])
                raise
            skipped.append(f"{cell['id']}: needs {exc.name}, which is not installed (Jupyter-only)")
        except Exception:
            part.save(failed_cell=cell["id"])  # Run All stops at the first error, and so does this
            raise
        finally:
            plt.close("all")
        timings.append((cell["id"], time.perf_counter() - t0))
        figures = {k: v for k, get in NOTEBOOK_FIGURES[name].items() if (v := _figure(namespace, get)) is not None}
        slow = ", ".join(f"{cell_id} {seconds:.1f} s" for cell_id, seconds in timings if seconds >= 1.0)
        part.save(cells_run=len(timings), cells_seconds=round(time.perf_counter() - start, 1),
                  cells_over_1s=slow or "none", **figures)
    for text in skipped:
        part.note(f"skipped {text}")
    checkpoints = sorted(p.name for p in work.glob("*.pt"))
    part.save(checkpoints=", ".join(checkpoints) or "none")


# --------------------------------------------------------------------------- scoring

def checkpoint_to_score(part: Part) -> tuple[Path, str]:
    """(path, what it is): the 06 notebook's checkpoint (a real submission), else the FastNet of part 1,
    else an untrained stand-in with the solution's recipe (its accuracy means nothing)."""
    from helpers.grading.challenge import write_solution_work_files
    for path, what in ((part.work / "notebook_06" / "challenge_model.pt", "the 06 notebook's challenge_model.pt"),
                       (part.work / "fastnet_model.pt", "the FastNet of part 1 (seed 0)")):
        if path.is_file():
            return path, what
    folder = part.work / "scoring"
    folder.mkdir(exist_ok=True)
    part.note("no trained checkpoint from parts 1 or 4: scoring an untrained stand-in (its accuracy means nothing)")
    return write_solution_work_files(folder)[0], "an untrained stand-in (the solution's recipe, seeded)"


def sandbox_problem() -> str | None:
    """Why the grader's sandbox cannot run here (bubblewrap missing), or None when it can be tried."""
    from helpers.grading.sandbox import SandboxUnavailable, find_bwrap
    try:
        find_bwrap()
    except SandboxUnavailable as exc:
        return str(exc).splitlines()[0][:160]
    return None


def scoring_part(part: Part) -> None:
    """Score one checkpoint as the grader does. In-process first (score.evaluate_checkpoint: the worker's
    prediction and the grader's metrics, no sandbox, torch already imported); then, when bubblewrap
    is installed, the real grading path (score_checkpoint: a fresh sandboxed process, the points).
    `path` names the one whose seconds are the headline: the sandbox when it ran, else in-process."""
    from helpers.data import DataError, load_dataset
    from helpers.grading.score import score_checkpoint
    from helpers.grading.score import evaluate_checkpoint as evaluate
    path, what = checkpoint_to_score(part)
    try:
        synthetic = part.dry or load_dataset("cifar10", download=False).name != "cifar10"
    except DataError:
        synthetic = True
    device = str(part.device)
    part.save(checkpoint=what, checkpoint_mb=round(path.stat().st_size / 1e6, 1))

    start = time.perf_counter()
    row = evaluate(path, "cifar10", allow_synthetic=synthetic, device=device)
    seconds = time.perf_counter() - start
    if row["status"] == "error":
        raise RuntimeError(f"the grader could not score: {row['reason']}")
    part.save(path="in-process (score.evaluate_checkpoint, no sandbox)", seconds=seconds, in_process_seconds=seconds,
              score_status=row["status"], accuracy=row.get("accuracy"), macro_f1=row.get("macro_f1"),
              images=row.get("images"))

    problem = sandbox_problem()
    if problem:
        part.note(f"no sandbox here ({problem}): the in-process figure is the one measured")
        return
    start = time.perf_counter()
    graded = score_checkpoint(path, dataset="cifar10", allow_synthetic=synthetic, device=device)
    seconds = time.perf_counter() - start
    if graded["status"] == "error" or any(s in graded["reason"] for s in ("scoring process failed", "timed out")):
        part.note(f"the sandboxed scoring failed ({graded['reason'][:200]}): the in-process figure stands")
        return
    part.save(path="sandbox (bubblewrap, fresh process)", seconds=seconds, sandbox_seconds=seconds,
              score_status=graded["status"], points=graded["points"], reason=graded["reason"][:200])


PART_FUNCTIONS = {
    "fastnet": fastnet_part,
    "fastnet_compile": lambda part: fastnet_part(part, compile=True),
    "pipelines": pipelines_part,
    "resnet18": resnet18_part,
    "notebook_04": notebook_part,
    "notebook_06": notebook_part,
    "scoring": scoring_part,
}


if __name__ == "__main__":
    sys.exit(main())
