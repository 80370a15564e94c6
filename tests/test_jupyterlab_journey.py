"""The student's journey in a real JupyterLab, driven in headless Chromium (issue 14, part 4).

One JupyterLab for the module, on 127.0.0.1 with a token, in reduced mode and offline, with the
venv's python3 kernel, a data folder of its own and the matplotlib backend a student gets (inline).
In it, through tests/browser.py's Chromium, a student:
1. opens the blank release of 01 and runs all of it (Run All stops at a failing check, so, as a
   student would, runs on from the next cell each time) and sees only the designed failures: the
   blocks' own checks raising NotImplementedError, and "skipped: finish `...` (part N)" elsewhere;
2. opens a solved 04, runs the cells above its full training run, then that cell, and watches the
   ipywidgets progress bar reach 100% while the live curves draw;
3. opens the notebook `python -m helpers label --sample` writes, runs the labelling tool, labels
   five images with the keys A/B (mouse over the tool, as ipyevents wants) and finds them in labels.csv;
4. opens nbgrader's Assignments panel and sees the assignments released to an exchange made here.
The notebooks are run with JupyterLab's own commands (the app object is exposed with
--LabApp.expose_app_in_browser); what the student sees is read from the page. Screenshots of every
step go to each test's tmp_path.
"""
import csv
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from browser import page_text, screenshot, wait_for
from helpers.config import PROJECT_ROOT

BIN = Path(sys.executable).parent  # the venv's bin: its jupyter, and the python its python3 kernel runs
RELEASED = ["01_data", "04_training"]  # released to the exchange for the Assignments panel
KEYS = "ababa"  # pressed in the labelling tool
CLASSES = ["disk", "square"]  # A and B
# JupyterLab's settings for the test: every cell in the DOM (no windowing, so offscreen outputs can be
# read), and no news or update toasts over the page.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}',
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        '{"fetchNews": "false", "checkForUpdates": false}',
}

# JavaScript: `app` and the open notebook `panel` whose path is arguments[0].
PANEL = ("const app = window.jupyterapp;"
         "const panel = app && [...app.shell.widgets('main')].find(w => w.context && w.context.path === arguments[0]);")
# Every code cell: index, grade_id, execution count, error outputs (from the model) and the text its
# output area shows (from the DOM).
CELLS = PANEL + """
return panel.content.widgets.map((c, i) => c.model.type !== 'code' ? null : {
  index: i,
  grade_id: (c.model.getMetadata('nbgrader') || {}).grade_id || '',
  source: c.model.sharedModel.getSource(),
  count: c.model.executionCount,
  errors: c.model.outputs.toJSON().filter(o => o.output_type === 'error').map(o => [o.ename, o.evalue]),
  text: (c.node.querySelector('.jp-OutputArea') || {innerText: ''}).innerText,
  images: [...c.node.querySelectorAll('.jp-OutputArea img')].filter(im => im.complete && im.naturalWidth > 0).length,
}).filter(Boolean);
"""
# Start a notebook command on the panel (arguments[1]; with the active cell arguments[2] unless null);
# window.__journeyRun says when it has finished and what it returned.
RUN = PANEL + """
app.shell.activateById(panel.id);
if (arguments[2] !== null) panel.content.activeCellIndex = arguments[2];
const run = window.__journeyRun = {done: false, result: null};
app.commands.execute(arguments[1]).then(r => { run.result = r; run.done = true; },
                                        e => { run.result = String(e); run.done = true; });
"""
KERNEL_IDLE = PANEL + "return !!panel && panel.sessionContext.session?.kernel?.status === 'idle';"
# Records what the page shows of ipywidgets progress bars while a cell runs: how many were drawn, the
# widest they got (%), the text beside them, and how many output images were added while one was shown.
WATCH_PROGRESS = """
const seen = window.__progress = {bars: 0, max: 0, labels: [], liveImages: 0};
const look = bar => {
  seen.max = Math.max(seen.max, parseFloat(bar.style.width) || 0);
  const box = bar.closest('.widget-hbox');
  const text = box ? box.innerText.replace(/\\s+/g, ' ').trim() : '';
  if (text && seen.labels[seen.labels.length - 1] !== text) seen.labels.push(text);
};
new MutationObserver(records => {
  for (const r of records) {
    const el = r.target.nodeType === 1 ? r.target : r.target.parentElement;
    if (!el) continue;
    if (el.classList.contains('progress-bar')) look(el);
    const box = el.closest('.widget-hbox');
    if (box) box.querySelectorAll('.progress-bar').forEach(look);
    for (const n of r.addedNodes) {
      if (n.nodeType !== 1) continue;
      n.querySelectorAll('.progress-bar').forEach(b => { seen.bars++; look(b); });
      const imgs = n.matches('.jp-RenderedImage img') ? 1 : n.querySelectorAll('.jp-RenderedImage img').length;
      if (imgs && document.querySelector('.jupyter-widgets .progress-bar')) seen.liveImages += imgs;
    }
  }
}).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['style'],
                           characterData: true});
"""


def _free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A `jupyter lab` subprocess (its own process group) serving `root`; stopped by its process id."""

    def __init__(self, tmp: Path, root: Path, env: dict):
        self.root, self.log_path = root, tmp / "lab.log"
        self.runtime = Path(env["JUPYTER_RUNTIME_DIR"])
        self.token = secrets.token_hex(16)
        for _attempt in range(3):  # another process may take the free port before Lab binds it
            self.port = _free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            cmd = [str(BIN / "jupyter"), "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                   f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
                   "--LabApp.expose_app_in_browser=True"] + (["--allow-root"] if os.geteuid() == 0 else [])
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
            if self._wait_until_up(120):
                return
            if self.process.poll() is None:
                break
        exited = self.process.poll()
        self.stop()
        raise RuntimeError(("JupyterLab did not answer /api/status within 120 s" if exited is None else
                            f"JupyterLab exited with {exited}") + f"; its log ends:\n{self.log()}")

    def _wait_until_up(self, timeout: float) -> bool:
        """True once /api/status answers with the token; False when the server exits or time runs out."""
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(f"{self.url}/api/status", headers={"Authorization": f"token {self.token}"})
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(request, timeout=2) as response:
                    if response.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def log(self, limit: int = 3000) -> str:
        """The end of the server's log (kernel start-up errors show there)."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-limit:]

    def stop(self) -> None:
        """SIGTERM to the server's group (it shuts its kernels down), SIGKILL after 20 s, then any kernel left."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except ProcessLookupError:  # it has exited already
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for pid in _processes_naming(str(self.runtime)):  # kernels run in sessions of their own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _processes_naming(text: str) -> list[int]:
    """Process ids whose command line contains `text` (Linux /proc; elsewhere none)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if text in (entry / "cmdline").read_bytes().decode(errors="replace") and int(entry.name) != os.getpid():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def _prepare_root(root: Path) -> None:
    """The student's folder: the blank release of 01, a solved 04, and a labelling notebook on practice images."""
    from helpers.cli import main as helpers_cli
    from helpers.grading import simulate
    root.mkdir(parents=True)
    shutil.copy2(PROJECT_ROOT / "release" / "01_data" / "01_data.ipynb", root / "01_data.ipynb")
    solved = simulate.solution(simulate.read(PROJECT_ROOT / "release" / "04_training" / "04_training.ipynb"),
                               simulate.read(PROJECT_ROOT / "source" / "04_training" / "04_training.ipynb"))
    nbformat.write(solved, str(root / "04_training.ipynb"))
    assert helpers_cli(["label", str(root / "practice"), "--classes", ",".join(CLASSES), "--sample", "--dry-run",
                           "--notebook", str(root / "label_practice.ipynb")]) == 0


def _release_to_exchange(tmp: Path) -> Path:
    """Release RELEASED to an exchange made here; returns a student's home whose nbgrader config names it."""
    from helpers.grading import course
    exchange = tmp / "exchange"
    course_root = course.make_course_dir(tmp / "course", [])
    for name in RELEASED:
        shutil.copytree(PROJECT_ROOT / "release" / name, course_root / "release" / name)
        course.release_assignment(course_root, name, exchange=exchange)
    home = tmp / "home"
    course.student_config(home, exchange, course.course_id(course_root))
    return home


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    """JupyterLab on the student's folder (reduced mode, offline, inline plots, the venv's python3 kernel)."""
    t0 = time.monotonic()
    if not (BIN / "jupyter").exists():
        pytest.fail(f"{BIN / 'jupyter'} is missing: run the tests with the venv's python (make test)", pytrace=False)
    tmp = tmp_path_factory.mktemp("jupyterlab")
    data = tmp / "data"
    from helpers.data import load_dataset
    load_dataset("synthetic", root=data)  # the generated dataset's cache, made once outside the timed cells
    root = tmp / "root"
    _prepare_root(root)
    home = _release_to_exchange(tmp)
    settings = tmp / "settings"
    for name, text in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(text)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COURSE_", "JUPYTER", "NBGRADER_")) and k != "MPLBACKEND"}  # inline plots
    env.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", COURSE_FAST="1", COURSE_OFFLINE="1",
               COURSE_DATA_DIR=str(data), JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
               JUPYTER_DATA_DIR=str(home / ".local" / "share" / "jupyter"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"))
    server = Lab(tmp, root, env)
    print(f"\nJupyterLab: prepared and started in {time.monotonic() - t0:.1f} s")
    try:
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------------------- driving JupyterLab

def _cells(browser, name) -> list[dict]:
    """Each code cell of the open notebook `name` as CELLS reads it (model and page)."""
    return browser.execute_script(CELLS, name)


def _describe(lab, name=None, shots=None):
    """What the page showed, for failure messages: cells' output text or the page's, and failure.png in `shots`."""
    def describe(browser):
        lines = []
        if shots is not None:
            try:
                lines.append(f"(screenshot: {screenshot(browser, shots, 'failure')})")
            except Exception:
                pass
        if name is not None:
            try:
                for c in _cells(browser, name):
                    if c["count"] is not None or c["text"]:
                        lines.append(f"--- cell {c['index']} [{c['count']}] {c['grade_id']}:\n{c['text'][-800:]}")
            except Exception:
                pass
        if len(lines) <= 1:
            lines += [page_text(browser), f"--- JupyterLab's log:\n{lab.log(1500)}"]
        return "\n".join(lines)
    return describe


def _open(browser, lab, name: str, shots: Path) -> None:
    """Open notebook `name` in a fresh JupyterLab page and wait for its python3 kernel to be idle."""
    browser.get(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}")
    wait_for(browser, lambda d: d.execute_script(PANEL + "return !!panel && panel.context.isReady && "
                                                 "panel.content.widgets.length > 0 && "
                                                 "panel.sessionContext.session?.kernel?.status === 'idle';", name),
             120, f"{name} to open with an idle kernel", _describe(lab, shots=shots))
    kernel = browser.execute_script(PANEL + "return panel.sessionContext.session.kernel.name;", name)
    assert kernel == "python3", f"{name} opened with kernel {kernel!r}, not the venv's python3"
    screenshot(browser, shots, f"{Path(name).stem}-opened")


def _run(browser, lab, name: str, command: str, cell=None, timeout: float = 120, while_waiting=None, shots=None):
    """Run a notebook command (on cell `cell`) until done and the kernel idle; its result (false: a cell failed)."""
    browser.execute_script(RUN, name, command, cell)

    def finished(d):
        if while_waiting is not None:
            while_waiting(d)
        return d.execute_script("return window.__journeyRun.done") and d.execute_script(KERNEL_IDLE, name)
    wait_for(browser, finished, timeout, f"{command} in {name} to finish", _describe(lab, name, shots), poll=0.3)
    return browser.execute_script("return window.__journeyRun.result")


def _close(browser, name: str) -> None:
    """Shut the notebook's kernel down (CPU for the next step) and mark it saved (no leave-page prompt)."""
    try:
        browser.execute_script(PANEL + "if (panel) { panel.context.model.dirty = false;"
                                       " panel.sessionContext.shutdown(); }", name)
    except Exception:  # cleanup must not hide the test's own failure
        pass


def _scroll_to(browser, name: str, index: int) -> None:
    """Select cell `index` and scroll it into view (for the screenshots)."""
    browser.execute_script(PANEL + "panel.content.activeCellIndex = arguments[1];"
                                   "panel.content.widgets[arguments[1]].node.scrollIntoView();", name, index)


def _scroll_to_outputs(browser, name: str, index: int) -> None:
    """Scroll the end of cell `index`'s outputs into view (the bar, the epoch lines and the live plot)."""
    browser.execute_script(PANEL + "const o = panel.content.widgets[arguments[1]].node.querySelector('.jp-OutputArea');"
                                   "if (o) o.scrollIntoView({block: 'end'});", name, index)


# ----------------------------------------------------------------------------- the journey

def test_run_all_on_the_blank_release_shows_only_the_designed_failures(browser, lab, tmp_path):
    """Run All on a blank 01 in JupyterLab shows the blocks' own failing checks and 'finish ...' lines, nothing else."""
    name = "01_data.ipynb"
    t0 = time.monotonic()
    _open(browser, lab, name, tmp_path)
    try:
        # Run All stops at the first failing check; a student then runs that cell's successor and all
        # below (Run > Run Selected Cell and All Below), again after each failing check.
        command, cell, runs = "notebook:run-all-cells", None, 0
        while True:
            runs += 1
            ok = _run(browser, lab, name, command, cell, shots=tmp_path)
            screenshot(browser, tmp_path, f"01-run-{runs}")
            cells = _cells(browser, name)
            cell = next((c["index"] for c in cells if c["count"] is None), None)
            if ok is True or cell is None or runs > len(cells):
                break
            command = "notebook:run-all-below"
        shown = _describe(lab, name)(browser)
        not_run = [c["index"] for c in cells if c["count"] is None]
        assert not not_run, f"cells {not_run} never ran; the page showed:\n{shown}"

        bad, failed = [], []
        for c in cells:
            for ename, evalue in c["errors"]:
                failed.append(c["grade_id"])
                if ename == "NameError" or not c["grade_id"].endswith(("-tests", "-answer")):
                    bad.append(f"cell {c['index']} ({c['grade_id'] or 'plain'}): {ename}: {evalue}")
                elif ename not in c["text"]:
                    bad.append(f"cell {c['index']} ({c['grade_id']}): its {ename} is not shown: {c['text'][:300]!r}")
        assert not bad, "errors outside the blocks' own cells, or not shown:\n  " + "\n  ".join(bad)
        checks = [c["grade_id"] for c in cells if c["grade_id"].endswith("-tests")]
        assert checks and set(checks) <= set(failed), \
            f"every check of a blank release must fail; {sorted(set(checks) - set(failed))} did not:\n{shown}"
        assert not [c for c in cells if "NameError" in c["text"]], f"a NameError is shown:\n{shown}"

        answers = {m for c in cells if c["grade_id"].endswith("-answer")
                   for m in re.findall(r"^(?:def|class) (\w+)", c["source"], flags=re.M)}
        skipped = [ln for c in cells for ln in c["text"].splitlines() if ln.startswith("skipped: ")]
        assert skipped, f"no cell said which part to finish:\n{shown}"
        for line in skipped:
            assert "finish `" in line and "(part " in line, line
            named = line.split("finish `", 1)[1].split("`", 1)[0]
            assert named in answers, f"{line!r} names {named!r}, not one of the answer blocks {sorted(answers)}"
        first = next(c["index"] for c in cells if c["errors"])
        _scroll_to(browser, name, first)
        screenshot(browser, tmp_path, "01-first-designed-failure")
        print(f"\n01: opened and ran all ({runs} runs) in {time.monotonic() - t0:.1f} s; "
              f"screenshots in {tmp_path}")
    finally:
        _close(browser, name)


def test_training_shows_the_progress_widget_reach_100_and_the_live_plot(browser, lab, tmp_path):
    """A solved 04's full training run draws an ipywidgets bar that reaches 100% and live curves while it trains."""
    name = "04_training.ipynb"
    t0 = time.monotonic()
    _open(browser, lab, name, tmp_path)
    try:
        cells = _cells(browser, name)
        full = next(c["index"] for c in cells if c["grade_id"] == "full-run")
        assert _run(browser, lab, name, "notebook:run-all-above", full, timeout=150, shots=tmp_path) is True, \
            "a cell above the training run failed in the solved notebook:\n" + _describe(lab, name)(browser)
        t1 = time.monotonic()
        browser.execute_script(WATCH_PROGRESS)
        _scroll_to(browser, name, full)
        shots = set()

        def shoot_while_training(d):
            """A screenshot when the bar first shows, another when the live plot first draws beside it."""
            seen = d.execute_script("return window.__progress")
            for shot, now in (("04-training-bar", seen["bars"] > 0), ("04-training-plot", seen["liveImages"] > 0)):
                if now and shot not in shots:
                    shots.add(shot)
                    _scroll_to_outputs(d, name, full)
                    screenshot(d, tmp_path, shot)
        result = _run(browser, lab, name, "notebook:run-cell", full, timeout=180, while_waiting=shoot_while_training,
                      shots=tmp_path)
        seen = browser.execute_script("return window.__progress")
        cell = next(c for c in _cells(browser, name) if c["index"] == full)
        _scroll_to_outputs(browser, name, full)
        screenshot(browser, tmp_path, "04-trained")
        shown = f"the cell showed:\n{cell['text']}\nbar texts seen: {seen['labels'][-3:]}"
        assert result is True and not cell["errors"], f"the training cell failed: {cell['errors']}\n{shown}"
        assert seen["bars"] > 0, ("no ipywidgets progress bar was drawn (is jupyterlab_widgets installed and "
                                  f"enabled? `jupyter labextension list`); {shown}")
        assert seen["max"] >= 100 and any(re.search(r"100%\s+(\d+)/\1\b", t) for t in seen["labels"]), \
            f"the progress bar stopped at {seen['max']}%; {shown}"
        assert seen["liveImages"] > 0, f"no plot was drawn while the bar was shown; {shown}"
        assert cell["images"] >= 1, f"the live plot is not shown after training; {shown}"
        assert "100%|" in cell["text"] and re.search(r"^epoch (\d+)/\1 ", cell["text"], flags=re.M), \
            f"the bar's final text line or the last epoch's line is missing; {shown}"
        assert not browser.execute_script(PANEL + "return panel.content.widgets[arguments[1]].node"
                                                  ".querySelector('.jupyter-widgets .progress-bar') !== null;",
                                          name, full), "the widget bar was not replaced by its text when it closed"
        print(f"\n04: cells above in {t1 - t0:.1f} s, training cell in {time.monotonic() - t1:.1f} s "
              f"({len(seen['labels'])} bar updates, {seen['liveImages']} live plot draws)")
    finally:
        _close(browser, name)


def test_labelling_five_images_with_the_keyboard_writes_labels_csv(browser, lab, tmp_path):
    """Five key presses (A/B) over the labelling tool label five images, each saved at once to labels.csv."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    name = "label_practice.ipynb"
    t0 = time.monotonic()
    _open(browser, lab, name, tmp_path)
    try:
        cells = _cells(browser, name)
        tool = next(c["index"] for c in cells if "LabellingTool(" in c["source"])
        n_cells = browser.execute_script(PANEL + "return panel.content.widgets.length;", name)
        assert _run(browser, lab, name, "notebook:run-cell", tool, shots=tmp_path) is True, \
            _describe(lab, name)(browser)
        header = PANEL + ("const h = panel.content.widgets[arguments[1]].node"
                          ".querySelector('.jp-OutputArea .widget-vbox .widget-html-content');"
                          "return h ? h.innerText : '';")

        def labelled(d):
            m = re.search(r"(\d+)/(\d+) labelled", d.execute_script(header, name, tool))
            return m and (int(m.group(1)), int(m.group(2)))
        done, total = wait_for(browser, labelled, 30, "the labelling tool to show", _describe(lab, name, tmp_path))
        assert done == 0 and total == 20, f"the practice folder should start with 0/20 labelled, got {done}/{total}"
        box = browser.execute_script(PANEL + "const b = panel.content.widgets[arguments[1]].node"
                                             ".querySelector('.jp-OutputArea .widget-vbox');"
                                             "b.scrollIntoView(); return b;", name, tool)
        menu = browser.find_element(By.ID, "jp-top-panel")

        # ipyevents takes keys while the mouse is over the tool (on mouseenter it marks and focuses it);
        # until it has (its listener may not be bound yet), the mouse leaves and enters again.
        def hovered(d):
            if d.execute_script("return arguments[0].classList.contains('ipyevents-watched') && "
                                "document.activeElement === arguments[0];", box):
                return True
            ActionChains(d).move_to_element(menu).move_to_element(box).perform()
            return False
        wait_for(browser, hovered, 30, "the labelling tool to take the keys (mouse over it)",
                 _describe(lab, name, tmp_path))
        screenshot(browser, tmp_path, "label-tool")
        for i, key in enumerate(KEYS, start=1):
            ActionChains(browser).send_keys(key).perform()
            wait_for(browser, lambda d, i=i: labelled(d) == (i, total), 30, f"{i}/{total} labelled after key {key!r}",
                     _describe(lab, name, tmp_path))
        screenshot(browser, tmp_path, "label-five-done")
        with open(lab.root / "practice" / "labels.csv", newline="") as f:
            rows = list(csv.reader(f))
        by_key = dict(zip("ab", CLASSES))
        assert rows == [["path", "label"]] + [[f"img_{i:03d}.png", by_key[k]] for i, k in enumerate(KEYS)], rows
        assert browser.execute_script(PANEL + "return panel.content.widgets.length;", name) == n_cells, \
            "a key reached JupyterLab (A/B insert cells there) instead of the tool"
        print(f"\nlabelling: opened, ran and labelled {len(KEYS)} images in {time.monotonic() - t0:.1f} s")
    finally:
        _close(browser, name)


def test_the_assignments_panel_lists_the_released_assignments(browser, lab, tmp_path):
    """nbgrader's Assignments panel in the student's JupyterLab lists what the instructor released to the exchange."""
    t0 = time.monotonic()
    browser.get(f"{lab.url}/lab?reset&token={lab.token}")
    has_command = "return !!window.jupyterapp?.commands.hasCommand('nbgrader:open-assignment-list');"
    wait_for(browser, lambda d: d.execute_script(has_command), 60, "JupyterLab with nbgrader's Assignments command",
             _describe(lab, shots=tmp_path))
    browser.execute_script("window.jupyterapp.commands.execute('nbgrader:open-assignment-list')")
    released = "const l = document.getElementById('released_assignments_list'); return l ? l.innerText : '';"

    def listed(d):
        names = set(d.execute_script(released).split())
        return set(RELEASED) <= names and names
    wait_for(browser, listed, 60, f"the Released assignments list to show {RELEASED}",
             lambda d: d.execute_script(released) or page_text(d))
    screenshot(browser, tmp_path, "assignments-panel")
    print(f"\nassignments panel: {time.monotonic() - t0:.1f} s")
