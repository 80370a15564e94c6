"""A static look at the answer cells for what reaches past the student's own code (trusted side).

The runtime monitor lives in the student's process and can be blinded; this scan reads the
submitted text in the trusted process instead. It reports, with the line, names that reach into
the grading worker or its pipes, the C-level entry points a deny-list cannot remove (e.g.
`torch._C._nn.cross_entropy_loss`), and Python loops in blocks whose spec asks for batched code.
Findings are for the TA to read; they never change a score.
"""
from __future__ import annotations

import ast
import re

# (pattern, what it suggests); matched on each line of an answer cell
SUSPICIOUS = [
    (r"\bgc\s*\.\s*(get_objects|get_referrers|get_referents)", "walks the interpreter's objects (the grading worker's?)"),
    (r"__globals__|__closure__|sys\s*\.\s*_getframe|f_back|f_globals", "reaches into other code's frames or globals"),
    (r"helpers\.grading|\bServer\b|\bmonitor\b|TamperMonitor|canary", "names the grading harness"),
    (r"/proc/self/fd|os\s*\.\s*(write|dup2?|fdopen)\s*\(", "writes to raw file descriptors (the protocol's pipes?)"),
    (r"\bctypes\b|\bcffi\b", "loads C-level tools"),
    (r"_C\s*\.\s*_nn|torch\s*\.\s*ops\s*\.\s*aten|_jit_get_operation|cross_entropy_loss",
     "calls a C-level torch entry point a deny-list cannot remove"),
    (r"\bmarshal\b|\bzipimport\b|importlib\s*\.\s*reload|__pycache__|\.pyc\b",
     "loads code objects or caches directly"),
]


def suspicious_lines(source: str) -> list[dict]:
    """[{"line", "code", "detail"}] for each line of `source` matching SUSPICIOUS."""
    found = []
    for number, line in enumerate(source.splitlines(), 1):
        code = line.split("#", 1)[0]
        for pattern, detail in SUSPICIOUS:
            if re.search(pattern, code):
                found.append({"line": number, "code": line.strip()[:160], "detail": detail})
                break
    return found


def python_loops(source: str) -> list[dict]:
    """[{"line", "code", "detail"}] for `for`/`while` loops and comprehensions inside functions."""
    try:
        tree = ast.parse("\n".join("pass" if ln.lstrip().startswith(("%", "!")) else ln
                                   for ln in source.splitlines()))
    except SyntaxError:
        return []
    lines = source.splitlines()
    found = []
    for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
        for node in ast.walk(fn):
            if isinstance(node, (ast.For, ast.While, ast.ListComp, ast.GeneratorExp, ast.SetComp, ast.DictComp)):
                text = lines[node.lineno - 1].strip() if node.lineno <= len(lines) else ""
                found.append({"line": node.lineno, "code": text[:160],
                              "detail": f"a Python loop in {fn.name} (the spec asks for batched tensor code)"})
    return found
