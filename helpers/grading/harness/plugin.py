"""The pytest side of the harness: the `@block` marker, the `student` fixture and the per-block result.

Hidden tests are plain pytest functions marked with the nbgrader test cell they decide
(`@block("class_counts-tests", deny=[...])`). `HarnessPlugin` is passed to `pytest.main` by
`run.py`: it collects the deny rules of every block before the worker starts, gives each test the
session's `student`, and turns the outcomes into {grade_id: passed, reason}.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

MARK = "harness_block"


def block(grade_id: str, *, deny=(), timeout: float | None = None, batched: bool = False):
    """Mark a hidden test as deciding the points of nbgrader test cell `grade_id`.

    `deny`: what the block's spec forbids (see deny.py); `timeout`: seconds per call to the
    student's code in this test (default: the course's cell limit); `batched`: the spec asks for
    batched code (Python loops in the answer are listed in the tamper report for the TA).
    """
    return getattr(pytest.mark, MARK)(grade_id, deny=tuple(deny), timeout=timeout, batched=batched)


def _strings(node, constants: dict) -> list[str] | None:
    """The strings of a list/tuple literal, a module-level name bound to one, or a sum of those."""
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_strings(e, constants) if not isinstance(e, ast.Constant) else [e.value] for e in node.elts]
        return None if any(i is None for i in items) else [v for i in items for v in i if isinstance(v, str)]
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _strings(node.left, constants), _strings(node.right, constants)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Starred):
        return _strings(node.value, constants)
    return None


def declared_blocks(folder) -> dict[str, dict]:
    """{grade_id: {"tests": [names], "deny": [rules]}} read from the @block markers of a hidden test
    folder without importing it (for structure checks and the simulated drop-in student)."""
    out: dict[str, dict] = {}
    for path in sorted(Path(folder).glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants: dict[str, list[str]] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                values = _strings(node.value, constants)
                if values is not None:
                    constants[node.targets[0].id] = values
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef) or not node.name.startswith("test"):
                continue
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and getattr(dec.func, "id", "") == "block" and dec.args
                        and isinstance(dec.args[0], ast.Constant)):
                    entry = out.setdefault(dec.args[0].value, {"tests": [], "deny": []})
                    entry["tests"].append(node.name)
                    for kw in dec.keywords:
                        if kw.arg == "deny":
                            entry["deny"] += [r for r in _strings(kw.value, constants) or [] if r not in entry["deny"]]
    return out


def _first_line(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    for prefix in ("AssertionError: ", "helpers.grading.harness.session.StudentError: ", "StudentError: "):
        text = text.removeprefix(prefix)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "failed")
    return line[:400]


class HarnessPlugin:
    """Runs one student's hidden tests; `results` and `rules` are read after pytest.main returns."""

    def __init__(self, make_student):
        self.make_student = make_student  # (deny rules) -> session.Student
        self.rules: list = []
        self.batched: set[str] = set()
        self.blocks: dict[str, dict] = {}
        self.problems: list[str] = []
        self.session_student = None

    def pytest_configure(self, config):
        config.addinivalue_line("markers", f"{MARK}(grade_id, deny, timeout): the test cell a hidden test decides")

    def pytest_collection_modifyitems(self, session, config, items):
        from .deny import Rule
        for item in items:
            mark = item.get_closest_marker(MARK)
            if mark is None:
                self.problems.append(f"{item.nodeid}: no @block marker (every hidden test decides one test cell)")
                continue
            grade_id = mark.args[0]
            if mark.kwargs.get("batched"):
                self.batched.add(grade_id)
            self.blocks.setdefault(grade_id, {"passed": True, "reason": "", "tests": 0, "failed": []})
            self.blocks[grade_id]["tests"] += 1
            for text in mark.kwargs.get("deny", ()):
                rule = Rule.parse(text, grade_id.removesuffix("-tests"))
                if all(r.target != rule.target or r.argument != rule.argument for r in self.rules):
                    self.rules.append(rule)

    @pytest.fixture(scope="session")
    def student(self):
        self.session_student = self.make_student(self.rules)
        yield self.session_student
        self.session_student.close()

    @pytest.fixture(autouse=True)
    def _call_timeout(self, request, student):
        mark = request.node.get_closest_marker(MARK)
        seconds = mark.kwargs.get("timeout") if mark else None
        if seconds:
            before = self.session_student.call_seconds
            self.session_student.call_seconds = float(seconds)
            yield
            self.session_student.call_seconds = before
        else:
            yield

    def pytest_runtest_logreport(self, report):
        if report.passed and report.when != "call":
            return
        if report.skipped or (report.passed and report.when == "call"):
            return
        item_block = self._block_of(report)
        if item_block is None:
            return
        entry = self.blocks[item_block]
        entry["failed"].append(report.nodeid)
        if entry["passed"]:
            entry["passed"] = False
            entry["reason"] = _first_line(report)

    def pytest_itemcollected(self, item):
        mark = item.get_closest_marker(MARK)
        if mark is not None:
            self._ids = getattr(self, "_ids", {})
            self._ids[item.nodeid] = mark.args[0]

    def _block_of(self, report):
        return getattr(self, "_ids", {}).get(report.nodeid)
