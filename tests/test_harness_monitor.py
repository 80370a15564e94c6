"""The tamper monitor reports each in-cell attack on later checks at its cell and line and leaves a
clean answer alone; the paste check finds a renamed copy of reference code, not an honest rewrite."""
import base64
import builtins
import signal
import sys

import numpy
import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import helpers.checks
from helpers.grading.harness.monitor import MAX_LINE_CHECKS, TamperMonitor, canary_swallowed
from helpers.grading.harness.paste import pasted_references

SETUP = "import numpy as np\nimport helpers\nfrom helpers import checks"
CANARY = 'raise RuntimeError("grading canary")'

AST_ATTACK = '''import ast
import importlib
ip = importlib.import_module("IPy" + "thon").get_ipython()

class _Swallow(ast.NodeTransformer):
    def visit_Module(self, node):
        handler = ast.ExceptHandler(type=ast.Name("BaseException", ast.Load()), name=None, body=[ast.Pass()])
        node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[handler], orelse=[], finalbody=[])]
        return ast.fix_missing_locations(node)

getattr(ip, "ast_" + "transformers").append(_Swallow())
'''

HIDDEN_INPUT_TRANSFORMER = base64.b64encode(b'''ip = get_ipython()
def _wrap(lines):
    return ["try:\\n"] + ["    " + line for line in lines] + ["\\nexcept BaseException:\\n    pass\\n"]
ip.input_transformers_post.append(_wrap)
''').decode()
INPUT_ATTACK = f'''import base64
import builtins
_code = base64.b64decode("{HIDDEN_INPUT_TRANSFORMER}").decode()
getattr(builtins, "ex" + "ec")(_code)
'''

CUSTOM_EXC_ATTACK = '''ip = get_ipython()
ip.set_custom_exc((Exception,), lambda shell, etype, value, tb, tb_offset=None: None)

def _clear(result):
    result.error_in_exec = None

ip.events.register("post_run_cell", _clear)
'''

NOP_CHECKS_ATTACK = '''import importlib

class _Nop:
    def __getattr__(self, name):
        return lambda *a, **k: None

checks = _Nop()
setattr(importlib.import_module("helpers" + ".checks"), "check_equal", lambda *a, **k: None)
'''

CLEAN_ANSWER = '''from numpy import linalg

def class_counts(labels, num_classes):
    """Samples per class."""
    counts = np.zeros(num_classes, dtype=int)
    for label in np.asarray(labels):
        counts[label] += 1
    return counts

counts = class_counts([0, 1, 1], 3)
linalg.norm(counts)
'''


def line_of(source: str, text: str) -> int:
    """The 1-based line of the cell that contains `text`."""
    return next(i for i, line in enumerate(source.splitlines(), 1) if text in line)


def summary(events) -> list[tuple]:
    return [(e["cell"], e["line"], e["kind"]) for e in events]


@pytest.fixture
def monitor():
    """A fresh shell that ran the setup cell, baselined. Afterwards the process is put back: the
    attacks patch numpy and helpers.checks, the shell adds builtins and replaces sys.modules['__main__']."""
    saved = {module: dict(vars(module)) for module in (builtins, numpy, helpers.checks)}
    main, trace = sys.modules["__main__"], sys.gettrace()
    config = Config()
    config.HistoryManager.enabled = False
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    shell.run_cell(SETUP, store_history=False)
    monitor = TamperMonitor(shell, watched_names=("checks", "np", "helpers"))
    monitor.baseline()
    yield monitor
    InteractiveShell.clear_instance()
    sys.modules["__main__"] = main
    sys.settrace(trace)
    for module, attributes in saved.items():
        for name in vars(module).keys() - attributes.keys():
            delattr(module, name)
        for name, value in attributes.items():
            if vars(module).get(name) is not value:
                setattr(module, name, value)


def test_an_ast_transformer_is_reported_at_its_registration_line(monitor):
    _, events = monitor.run_cell("attack", AST_ATTACK)
    assert summary(events) == [("attack", line_of(AST_ATTACK, ".append("), "ast_transformer")]
    assert "_Swallow" in events[0]["detail"]


def test_an_input_transformer_hidden_in_base64_and_exec_is_reported(monitor):
    _, events = monitor.run_cell("attack", INPUT_ATTACK)
    assert summary(events) == [("attack", line_of(INPUT_ATTACK, '"ex" + "ec"'), "input_transformer")]
    assert "input_transformers_post" in events[0]["detail"]


def test_a_custom_exception_handler_and_an_error_clearing_callback_are_reported(monitor):
    _, events = monitor.run_cell("attack", CUSTOM_EXC_ATTACK)
    assert set(summary(events)) == {("attack", line_of(CUSTOM_EXC_ATTACK, "set_custom_exc"), "custom_exc"),
                                    ("attack", line_of(CUSTOM_EXC_ATTACK, "register("), "event_callback")}
    assert any("post_run_cell" in e["detail"] and "_clear" in e["detail"] for e in events)


def test_a_no_op_checks_object_and_a_patched_check_are_reported(monitor):
    _, events = monitor.run_cell("attack", NOP_CHECKS_ATTACK)
    assert summary(events) == [("attack", line_of(NOP_CHECKS_ATTACK, "checks = _Nop()"), "rebound_name"),
                               ("attack", line_of(NOP_CHECKS_ATTACK, "setattr("), "patched_attribute")]
    assert "'checks'" in events[0]["detail"] and "helpers.checks.check_equal" in events[1]["detail"]


def test_a_patched_numpy_function_is_reported_once_at_its_line(monitor):
    cell = "x = 1\nnp.allclose = lambda *a, **k: True\ny = 2"
    _, events = monitor.run_cell("attack", cell)
    assert summary(events) == [("attack", 2, "patched_attribute")]
    assert events[0]["detail"].startswith("numpy.allclose rebound")
    assert monitor.run_cell("later", "z = 3")[1] == []  # still patched, but reported once


def test_a_clean_answer_cell_gives_no_events(monitor):
    result, events = monitor.run_cell("class_counts-answer", CLEAN_ANSWER)
    assert result.error_in_exec is None and events == []


def test_old_module_names_are_not_tampering_but_a_module_posing_as_one_is():
    """`import helpers.evaluate` binds helpers.eval.evaluate on the package under its old name
    (helpers/moved.py): no event. A made-up module bound there is reported, even named like the real one."""
    saved_helpers, saved_modules = dict(vars(helpers)), dict(sys.modules)
    main, trace = sys.modules["__main__"], sys.gettrace()
    for old in ("helpers.schedules", "helpers.evaluate", "helpers.plots"):
        sys.modules.pop(old, None)
        vars(helpers).pop(old.split(".")[1], None)
    config = Config()
    config.HistoryManager.enabled = False
    InteractiveShell.clear_instance()
    shell = InteractiveShell.instance(config=config)
    try:
        shell.run_cell(SETUP, store_history=False)
        monitor = TamperMonitor(shell, watched_names=("checks", "np", "helpers"))
        monitor.baseline()
        _, events = monitor.run_cell("imports", "from helpers.schedules import SCHEDULES\nimport helpers.evaluate\n")
        assert events == []
        attack = "import types\nhelpers.plots = types.ModuleType('helpers.eval.plots')\n"
        _, events = monitor.run_cell("attack", attack)
        assert summary(events) == [("attack", 2, "patched_attribute")] and "helpers.plots added" in events[0]["detail"]
    finally:
        InteractiveShell.clear_instance()
        sys.modules.clear()
        sys.modules.update(saved_modules)
        sys.modules["__main__"] = main
        sys.settrace(trace)
        for name in vars(helpers).keys() - saved_helpers.keys():
            delattr(helpers, name)
        vars(helpers).update(saved_helpers)


def test_the_canary_shows_whether_errors_are_swallowed(monitor):
    result, _ = monitor.run_cell("canary", CANARY)
    assert not canary_swallowed(result)
    monitor.run_cell("attack", AST_ATTACK)
    result, events = monitor.run_cell("canary", CANARY)
    assert canary_swallowed(result) and events == []


def test_switching_off_the_tracer_is_reported_and_later_changes_still_are(monitor):
    cell = "import sys\nsys.settrace(None)\nnp.allclose = lambda *a, **k: True"
    _, events = monitor.run_cell("attack", cell)
    assert summary(events) == [("attack", 2, "patched_attribute"), ("attack", None, "patched_attribute")]
    assert "sys.settrace" in events[0]["detail"] and "numpy.allclose" in events[1]["detail"]
    _, events = monitor.run_cell("next", "x = 1\nchecks = None")  # the next cell is traced again
    assert summary(events) == [("next", 2, "rebound_name")]


def test_past_the_line_check_cap_changes_are_found_after_the_cell(monitor):
    cell = f"for i in range({MAX_LINE_CHECKS}):\n    x = i\nnp.allclose = None"
    _, events = monitor.run_cell("loop", cell)
    assert summary(events) == [("loop", None, "patched_attribute")]


def test_hostile_objects_are_described_without_running_their_code(monitor):
    cell = ("class _Hostile:\n"
            "    def __eq__(self, other):\n        raise RuntimeError('eq')\n"
            "    def __repr__(self):\n        raise RuntimeError('repr')\n"
            "    __hash__ = None\n"
            "np.mean = _Hostile()\nchecks = _Hostile()")
    result, events = monitor.run_cell("attack", cell)
    assert result.error_in_exec is None
    assert [e["detail"] for e in events] == ["numpy.mean rebound to a __main__._Hostile object",
                                             "global 'checks' rebound to a __main__._Hostile object"]


def test_a_time_out_inside_the_monitor_still_stops_the_cell(monitor):
    def timed_out(signum, frame):
        raise TimeoutError("cell limit")
    previous = signal.signal(signal.SIGALRM, timed_out)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        result, events = monitor.run_cell("hang", "while True:\n    pass")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert isinstance(result.error_in_exec, TimeoutError) and events == []


# ----------------------------------------------------------------------------- pasted reference code

REFERENCES = ["helpers.split.train_val_split", "helpers.split.stratified_subset", "helpers.split.no_such_function"]

RENAMED_COPY = '''%matplotlib inline

def stratified_split(y, frac, s):
    y = np.asarray(y)
    if not 0.0 < frac < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {frac}")
    g = np.random.default_rng(s)
    tr, va = [], []
    for k in np.unique(y):
        perm = g.permutation(np.flatnonzero(y == k))
        m = int(round(len(perm) * frac))
        va.append(perm[:m])
        tr.append(perm[m:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(va))
'''

HONEST_SPLIT = '''def stratified_split(labels, val_fraction, seed):
    labels = np.asarray(labels)
    if val_fraction <= 0 or val_fraction >= 1:
        raise ValueError("val_fraction must be in (0, 1)")
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(labels), dtype=bool)
    for cls in np.unique(labels):
        members = np.where(labels == cls)[0]
        k = int(round(val_fraction * len(members)))
        is_val[rng.choice(members, size=k, replace=False)] = True
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)
'''


def test_a_renamed_copy_of_the_reference_is_found():
    [found] = pasted_references(RENAMED_COPY, REFERENCES)
    assert found["name"] == "stratified_split" and found["reference"] == "helpers.split.train_val_split"
    assert found["similarity"] >= 0.9 and found["line"] == 3


def test_an_honest_implementation_is_not_reported():
    assert pasted_references(HONEST_SPLIT, REFERENCES) == []


def test_an_unparseable_cell_gives_no_findings():
    assert pasted_references("%%bash\necho hello", REFERENCES) == []
    assert pasted_references("def stratified_split(labels:\n", REFERENCES) == []
