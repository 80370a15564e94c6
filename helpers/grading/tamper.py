"""The tamper report: a static scan of submitted notebooks for tricks that fake a pass in the kernel.

Nothing is executed. For each `submitted/<student>/<assignment>/*.ipynb` (and, on request, the
autograded copies) it reports:
- code that changes how later cells run or what they call: IPython input transformers, event
  hooks and magics, monkeypatching torch/numpy/helpers/builtins, sys.modules, importlib.reload,
  exec/eval (see helpers.grading.tamper_code);
- code that reads NBGRADER_EXECUTION (behaving differently under autograde);
- cell tags that skip execution or allow errors (skip-execution, raises-exception), and any tag
  added to a graded cell;
- nbgrader metadata changed against the release (a test cell made ungraded, points changed, a
  graded cell deleted or its grade_id changed, duplicate grade_ids);
- Python files in the submission folder (importable from the notebook's folder during
  autograde, so `torch.py` or `helpers/` there would replace the real module).
Lines identical to the release notebook's cell are the instructor's and are not reported.
Findings are reports for a TA to read: they never change a score.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import atomic_write
from .tamper_code import DEFAULT_ALIASES, PROTECTED_MODULES, parse_cell, protected_aliases, scan_code

SUSPICIOUS_TAGS = {
    "skip-execution": "tag 'skip-execution' asks the grader not to run this cell",
    "raises-exception": "tag 'raises-exception' tells the grader an error here is expected",
    "skip": "tag 'skip' can hide the cell",
    "remove-cell": "tag 'remove-cell' removes the cell from converted copies",
    "remove_cell": "tag 'remove_cell' removes the cell from converted copies",
}
NBGRADER_FIELDS = ("grade", "solution", "locked", "task", "points")
SHADOWED = set(PROTECTED_MODULES) | {"sitecustomize", "usercustomize", "matplotlib", "tqdm", "IPython", "os", "sys"}


@dataclass
class Finding:
    """One suspicious thing: where it is (cell grade_id or 'cell N', line within the cell) and why."""
    student: str
    notebook: str
    cell: str
    line: int | None
    code: str
    reason: str


def _meta(cell) -> dict:
    return (cell.get("metadata") or {}).get("nbgrader") or {}


def _is_graded(meta: dict) -> bool:
    return bool(meta.get("grade") or meta.get("solution") or meta.get("task") or meta.get("locked"))


def _label(cell, index: int) -> str:
    return _meta(cell).get("grade_id") or f"cell {index + 1}"


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


# ----------------------------------------------------------------------------- notebook checks

def _code_findings(nb, release_by_id: dict, release_sources: set, student: str, name: str) -> list[Finding]:
    """Tampering in the code cells, leaving out lines the release cell already has."""
    aliases = set(DEFAULT_ALIASES)
    for cell in nb.cells:  # imports anywhere in the notebook bind names for every cell
        if cell.get("cell_type") == "code" and (tree := parse_cell(_source(cell))) is not None:
            aliases |= protected_aliases(tree)
    found = []
    for index, cell in enumerate(nb.cells):
        source = _source(cell)
        if cell.get("cell_type") != "code" or source in release_sources:
            continue
        release_cell = release_by_id.get(_meta(cell).get("grade_id"))
        known = {line.strip() for line in _source(release_cell).split("\n")} if release_cell else set()
        lines = source.split("\n")
        by_line: dict[int, list[str]] = {}
        for lineno, reason in scan_code(source, aliases):
            text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
            if not (text and text in known):
                by_line.setdefault(lineno, []).append(reason)
        restored = (release_cell is not None and _meta(release_cell).get("locked")
                    and not _meta(release_cell).get("solution"))
        for lineno, reasons in sorted(by_line.items()):
            reason = "; ".join(reasons) + (" (in a read-only cell: autograde restores its source)" if restored else "")
            text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
            found.append(Finding(student, name, _label(cell, index), lineno, text[:200], reason))
    return found


def _tag_findings(nb, release_by_id: dict, student: str, name: str) -> list[Finding]:
    """Tags that skip a cell or excuse its errors, and tags added to graded cells."""
    found = []
    for index, cell in enumerate(nb.cells):
        tags = list((cell.get("metadata") or {}).get("tags") or [])
        meta = _meta(cell)
        release_cell = release_by_id.get(meta.get("grade_id"))
        release_tags = set((release_cell.get("metadata") or {}).get("tags") or []) if release_cell else set()
        for tag in tags:
            if tag in release_tags:
                continue
            if tag in SUSPICIOUS_TAGS:
                found.append(Finding(student, name, _label(cell, index), None, f"tags: {tags}", SUSPICIOUS_TAGS[tag]))
            elif _is_graded(meta):
                found.append(Finding(student, name, _label(cell, index), None, f"tags: {tags}",
                                     f"tag {tag!r} added to a graded cell"))
    return found


def _metadata_findings(nb, release_nb, student: str, name: str) -> list[Finding]:
    """Graded cells deleted, re-identified or changed (grade, solution, locked, task, points, type)."""
    found = []
    release_cells = {_meta(c)["grade_id"]: c for c in release_nb.cells if _meta(c).get("grade_id")}
    submitted: dict[str, list] = {}
    for index, cell in enumerate(nb.cells):
        if gid := _meta(cell).get("grade_id"):
            submitted.setdefault(gid, []).append((index, cell))
    for gid, cells in submitted.items():
        if len(cells) > 1:
            found.append(Finding(student, name, gid, None, "", f"grade_id {gid!r} appears {len(cells)} times "
                                 "(duplicate grade_ids break grading)"))
        if gid not in release_cells and _is_graded(_meta(cells[0][1])):
            found.append(Finding(student, name, gid, None, "", f"grade_id {gid!r} is not in the release"))
    by_source = {_source(c): i for i, c in enumerate(nb.cells)}
    for gid, release_cell in release_cells.items():
        if not _is_graded(_meta(release_cell)):
            continue
        if gid not in submitted:
            where = by_source.get(_source(release_cell))
            detail = (f"cell {where + 1} still has its source but not its nbgrader metadata"
                      if where is not None else "deleted or its grade_id changed")
            found.append(Finding(student, name, gid, None, "", f"graded cell {gid!r}: {detail}"))
            continue
        cell = submitted[gid][0][1]
        changes = [f"{field} {_meta(release_cell).get(field)!r} -> {_meta(cell).get(field)!r}"
                   for field in NBGRADER_FIELDS if _meta(release_cell).get(field) != _meta(cell).get(field)]
        if cell.get("cell_type") != release_cell.get("cell_type"):
            changes.append(f"cell type {release_cell.get('cell_type')} -> {cell.get('cell_type')}")
        if changes:
            found.append(Finding(student, name, gid, None, "", "nbgrader metadata changed: " + ", ".join(changes)))
    return found


def scan_notebook(nb, release_nb=None, *, student: str = "", notebook: str = "") -> list[Finding]:
    """Every finding in one notebook (an nbformat NotebookNode), compared with its release when given."""
    release_by_id = {_meta(c)["grade_id"]: c for c in release_nb.cells if _meta(c).get("grade_id")} if release_nb else {}
    release_sources = {_source(c) for c in release_nb.cells} if release_nb else set()
    found = _code_findings(nb, release_by_id, release_sources, student, notebook)
    found += _tag_findings(nb, release_by_id, student, notebook)
    if release_nb is not None:
        found += _metadata_findings(nb, release_nb, student, notebook)
    return found


# ----------------------------------------------------------------------------- folders

def _file_findings(folder: Path, release_dir: Path | None, student: str) -> list[Finding]:
    """Python files and packages at the top of a submission folder (importable during autograde)."""
    found = []
    shipped = {p.name for p in release_dir.iterdir()} if release_dir and release_dir.is_dir() else set()
    for path in sorted(folder.iterdir()):
        is_package = path.is_dir() and (path / "__init__.py").is_file()
        if path.name in shipped or not (is_package or path.suffix in (".py", ".pth")):
            continue
        stem = path.name if is_package else path.stem
        if stem in SHADOWED:
            reason = (f"{path.name} in the submission replaces the module {stem!r} for the notebook "
                      "during autograde")
        else:
            reason = f"extra Python {'package' if is_package else 'file'} {path.name} (importable during autograde; not scanned)"
        found.append(Finding(student, path.name, "(file)", None, "", reason))
    return found


def release_notebooks(course_root, assignment: str) -> dict:
    """{notebook file name: NotebookNode} from release/<assignment>, else source/<assignment>."""
    import nbformat
    for folder in (Path(course_root) / "release" / assignment, Path(course_root) / "source" / assignment):
        if folder.is_dir() and any(folder.glob("*.ipynb")):
            return {p.name: nbformat.read(str(p), as_version=4) for p in sorted(folder.glob("*.ipynb"))}
    return {}


def scan_submission(folder, releases: dict | None = None, *, student: str = "", release_dir=None,
                    label: str = "") -> list[Finding]:
    """Findings for one student's assignment folder (its notebooks and stray Python files)."""
    import nbformat
    folder = Path(folder)
    found = _file_findings(folder, Path(release_dir) if release_dir else None, student) if not label else []
    for path in sorted(folder.glob("*.ipynb")):
        name = f"{label}{path.name}"
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception as exc:  # a notebook nbformat cannot read is worth a look too
            found.append(Finding(student, name, "(file)", None, "", f"not a readable notebook ({type(exc).__name__})"))
            continue
        found += scan_notebook(nb, (releases or {}).get(path.name), student=student, notebook=name)
    return found


def scan_assignment(course_root, assignment: str, *, autograded: bool = False, students=None) -> list[Finding]:
    """Findings for every submitted/<student>/<assignment> (and autograded/ copies when asked)."""
    root = Path(course_root)
    releases = release_notebooks(root, assignment)
    release_dir = root / "release" / assignment
    found = []
    submitted = root / "submitted"
    names = sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir()) if submitted.is_dir() else []
    for student in names:
        if students is not None and student not in students:
            continue
        try:
            found += scan_submission(submitted / student / assignment, releases, student=student,
                                     release_dir=release_dir)
            copy = root / "autograded" / student / assignment
            if autograded and copy.is_dir():
                found += scan_submission(copy, releases, student=student, label="autograded/")
        except Exception as exc:  # one odd folder must not hide the others' findings
            found.append(Finding(student, assignment, "(folder)", None, "",
                                 f"could not be scanned ({type(exc).__name__}: {exc})"))
    return found


def write_csv(rows, path, fieldnames=None) -> Path:
    """Write Findings (or dicts with `fieldnames`) as CSV atomically: a temporary file, then a rename."""
    rows = [asdict(r) if isinstance(r, Finding) else dict(r) for r in rows]
    fieldnames = fieldnames or ["student", "notebook", "cell", "line", "code", "reason"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path
