"""Static checks of one code cell for in-kernel tampering; nothing is executed.

`scan_code(source, aliases)` returns (line, reason) pairs, line counted from 1 within the cell.
IPython syntax (%magics, %%cell magics, !shell) is checked by pattern and blanked out, then the
cell is parsed with `ast`; a cell that still does not parse is checked line by line with regular
expressions instead. `aliases` are the names bound to protected modules (or objects imported from
them) anywhere in the notebook, e.g. {"torch", "np", "nn", "accuracy"}.
"""
from __future__ import annotations

import ast
import re

PROTECTED_MODULES = ("torch", "numpy", "helpers", "builtins", "torchvision", "sklearn", "IPython", "nbgrader")
DEFAULT_ALIASES = frozenset({"torch", "numpy", "np", "helpers", "builtins", "nn", "F", "torchvision", "sklearn"})
# Settings a student may legitimately change: assignments under these are not monkeypatching.
ALLOWED_ASSIGNMENTS = ("torch.backends.",)

HOOK_ATTRIBUTES = {
    "input_transformers_cleanup": "registers an IPython input transformer (rewrites later cells)",
    "input_transformers_post": "registers an IPython input transformer (rewrites later cells)",
    "input_transformer_manager": "changes IPython's input transformers (rewrites later cells)",
    "ast_transformers": "registers an IPython AST transformer (rewrites later cells)",
    "set_custom_exc": "installs a custom IPython exception handler (can hide failing tests)",
    "set_hook": "installs an IPython hook",
    "showtraceback": "changes how IPython reports errors (can hide failing tests)",
    "run_cell": "wraps or replaces IPython's cell execution",
    "excepthook": "replaces the exception hook (can hide failing tests)",
    "displayhook": "replaces the display hook",
    "settrace": "installs a trace function (sees and can alter every later call)",
    "setprofile": "installs a profile function (sees every later call)",
    "meta_path": "changes Python's import machinery",
    "path_hooks": "changes Python's import machinery",
}
LINE_MAGICS = {
    "run": "runs another file with %run (its code is not scanned)",
    "load_ext": "loads an IPython extension (it can register hooks)",
    "reload_ext": "loads an IPython extension (it can register hooks)",
    "config": "changes IPython's configuration with %config",
    "alias_magic": "redefines a magic",
}
SHELL_WORDS = re.compile(r"helpers|torch|numpy|site-packages|sitecustomize|usercustomize|\.pth\b|\.py\b|nbgrader",
                         re.IGNORECASE)
# A line of IPython syntax: %magic, %%magic, !shell, or `x = %magic` / `x = !shell` (not `!=` or `% 2`).
MAGIC_LINE = re.compile(r"^(?:[\w\s,]+=\s*)?(?:%%?[A-Za-z_]|!(?!=))")
NBGRADER_ENV = "reads NBGRADER_EXECUTION: behaves differently under autograde"

# Fallback for cells that do not parse: (pattern, reason).
REGEX_CHECKS = [
    (re.compile(r"\bget_ipython\b"), "uses get_ipython(): can register input transformers or hooks"),
    (re.compile(r"input_transformers|ast_transformers"), HOOK_ATTRIBUTES["input_transformers_post"]),
    (re.compile(r"\bevents\s*\.\s*register\b"), "registers an IPython event hook (runs around every later cell)"),
    (re.compile(r"\bregister_magic"), "registers an IPython magic"),
    (re.compile(r"NBGRADER"), NBGRADER_ENV),
    (re.compile(r"\bsys\s*\.\s*modules\b"), "changes or reads sys.modules (can replace a module)"),
    (re.compile(r"\breload\s*\("), "reloads a module (importlib.reload)"),
    (re.compile(r"__builtins__"), "touches __builtins__"),
    (re.compile(r"\b(?:setattr|delattr)\s*\(\s*(?:torch|np|numpy|helpers|builtins|nn|F)\b"),
     "monkeypatches a protected module with setattr"),
    (re.compile(r"^\s*(?:torch|np|numpy|helpers|builtins|nn|F)(?:\s*\.\s*\w+)+\s*(?:[-+*/]?=)(?!=)"),
     "monkeypatches a protected module (assigns to its attribute)"),
    (re.compile(r"\b(?:exec|eval|__import__)\s*\("), "runs code built from a string (can hide any of the above)"),
]


def _magic_findings(line: str) -> list[str]:
    """Reasons for one line of IPython magic or shell syntax (the part after '%' or '!')."""
    stripped = line.strip()
    body = stripped if stripped[:1] in "%!" else stripped.split("=", 1)[1].strip()
    if body.startswith("!") or body.startswith("%system") or body.startswith("%sx"):
        words = SHELL_WORDS.findall(body)
        return [f"runs a shell command touching {words[0]!r} (it can rewrite installed code)"] if words else []
    name = re.match(r"%+(\w+)", body)
    reasons = [LINE_MAGICS[name.group(1)]] if name and name.group(1) in LINE_MAGICS else []
    if name and name.group(1) == "env" and re.search(r"NBGRADER|COURSE_", body):
        reasons.append("sets a grading environment variable with %env")
    return reasons


def _blank_ipython(source: str) -> tuple[str, list[tuple[int, str]], bool]:
    """(Python-only source, findings from magics, whether the body is Python at all)."""
    lines = source.split("\n")
    findings: list[tuple[int, str]] = []
    first = lines[0].strip() if lines else ""
    if first.startswith("%%"):
        magic = re.match(r"%%(\w+)", first)
        name = magic.group(1) if magic else ""
        if name == "capture":
            findings.append((1, "%%capture hides the cell's output"))
        elif name in ("writefile", "file"):
            target = first.split()[-1] if len(first.split()) > 1 else ""
            if SHELL_WORDS.search(target):
                findings.append((1, f"writes {target!r} from the notebook (a .py file there can shadow a module)"))
            return "", findings, False
        elif name in ("bash", "sh", "script", "system", "python", "python2", "python3", "pypy", "perl", "ruby"):
            words = SHELL_WORDS.findall(source)
            hint = f" touching {words[0]!r}" if words else ""
            findings.append((1, f"runs the cell in another interpreter with %%{name}{hint} (not scanned)"))
            return "", findings, False
        elif name in ("javascript", "js", "html", "latex", "markdown", "svg"):
            return "", findings, False
        lines[0] = ""
    out = []
    for i, line in enumerate(lines, start=1):
        stripped = line.strip()
        if MAGIC_LINE.match(stripped):
            findings += [(i, r) for r in _magic_findings(line)]
            indent = line[:len(line) - len(line.lstrip())]
            out.append(indent + "pass")
        else:
            out.append(line)
    return "\n".join(out), findings, True


def _dotted(node) -> str | None:
    """'a.b.c' for a chain of attributes (subscripts shown as []), None for anything else."""
    parts = []
    while True:
        if isinstance(node, (ast.Attribute, ast.Subscript)):
            parts.append(node.attr if isinstance(node, ast.Attribute) else "[]")
            node = node.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "vars" and node.args:
            parts.append("__dict__")  # vars(torch)[...] is torch.__dict__[...]
            node = node.args[0]
        else:
            break
    if isinstance(node, ast.Name):
        parts.append(node.id)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        parts.append(node.func.id + "()")
    else:
        return None
    return ".".join(reversed(parts)).replace(".[]", "[]")


class _Visitor(ast.NodeVisitor):
    """Collects (line, reason) for the tampering patterns in one parsed cell."""

    def __init__(self, aliases: set[str]):
        self.aliases = aliases
        self.found: list[tuple[int, str]] = []

    def flag(self, node, reason: str) -> None:
        self.found.append((getattr(node, "lineno", 1), reason))

    def _target(self, target, node) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self._target(elt, node)
            return
        if isinstance(target, ast.Starred):
            return self._target(target.value, node)
        dotted = _dotted(target)
        if dotted is None or "." not in dotted and "[" not in dotted:
            return
        root, shown = re.split(r"[.\[]", dotted)[0], ast.unparse(target)
        if "sys.modules" in dotted:
            self.flag(node, f"replaces a module through {shown}")
        elif root in ("vars()", "globals()") and "__builtins__" in shown:
            self.flag(node, "changes __builtins__")
        elif root in self.aliases and not dotted.startswith(ALLOWED_ASSIGNMENTS):
            self.flag(node, f"monkeypatches {shown} (assigns to an attribute of a protected module or its objects)")

    def visit_Assign(self, node):
        for target in node.targets:
            self._target(target, node)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._target(node.target, node)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._target(node.target, node)
        self.generic_visit(node)

    def visit_Delete(self, node):
        for target in node.targets:
            self._target(target, node)
        self.generic_visit(node)

    def visit_Call(self, node):
        name = _dotted(node.func) or ""
        last = name.rsplit(".", 1)[-1]
        first = node.args[0] if node.args else None
        first_root = (re.split(r"[.\[]", _dotted(first) or "")[0]) if first is not None else ""
        if last in ("setattr", "delattr") and first is not None and (
                first_root in self.aliases or "sys.modules" in (_dotted(first) or "")):
            self.flag(node, f"monkeypatches {ast.unparse(first)} with {last}()")
        elif last == "reload":
            self.flag(node, "reloads a module (importlib.reload)")
        elif last in ("exec", "eval", "compile", "__import__") and name == last:
            self.flag(node, f"runs code built from a string with {last}() (can hide any other trick)")
        elif name in ("sys.modules.update", "sys.modules.setdefault", "sys.modules.pop", "sys.modules.__setitem__"):
            self.flag(node, f"changes sys.modules with {name}()")
        elif last in ("patch", "object") and "patch" in name and first is not None:
            text = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else first_root
            if re.split(r"[.\[]", str(text))[0] in self.aliases | set(PROTECTED_MODULES):
                self.flag(node, f"patches {text} with {name}()")
        elif name.endswith("events.register") or name.endswith("events.unregister"):
            self.flag(node, "registers an IPython event hook (runs around every later cell)")
        elif last.startswith("register_magic"):
            self.flag(node, "registers an IPython magic")
        elif name in ("os.system", "os.popen") or name.startswith("subprocess."):
            self.flag(node, f"runs a shell command with {name}() (its effects are not scanned)")
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id == "get_ipython":
            self.flag(node, "uses get_ipython(): can register input transformers or hooks")
        elif node.id == "__builtins__":
            self.flag(node, "touches __builtins__")

    def visit_Attribute(self, node):
        if node.attr in HOOK_ATTRIBUTES:
            self.flag(node, HOOK_ATTRIBUTES[node.attr])
        elif node.attr == "__dict__" and (re.split(r"[.\[]", _dotted(node.value) or "")[0] in self.aliases):
            self.flag(node, f"reaches into {_dotted(node.value)}.__dict__ (can monkeypatch it)")
        self.generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            if "NBGRADER" in node.value:
                self.flag(node, NBGRADER_ENV)
            elif re.search(r"sitecustomize|usercustomize|site-packages|\.pth\b", node.value):
                self.flag(node, "refers to Python's startup files (sitecustomize, .pth, site-packages)")
            elif re.search(r"(^|/)\.\./|\b(?:autograded|submitted)/", node.value):
                self.flag(node, "refers to a path outside the submission folder (e.g. another student's files)")


def protected_aliases(tree: ast.AST) -> set[str]:
    """Names bound by imports of protected modules or of objects from them, in a parsed cell."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PROTECTED_MODULES:
                    names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in PROTECTED_MODULES:
                names.update(a.asname or a.name for a in node.names if a.name != "*")
    return names


def parse_cell(source: str) -> ast.AST | None:
    """The cell's syntax tree with IPython syntax blanked out, or None when it does not parse."""
    python, _, is_python = _blank_ipython(source)
    if not is_python:
        return None
    try:
        return ast.parse(python)
    except SyntaxError:
        return None


def scan_code(source: str, aliases=DEFAULT_ALIASES) -> list[tuple[int, str]]:
    """(line, reason) for every suspicious line of one code cell, sorted, one entry per reason."""
    python, found, is_python = _blank_ipython(source)
    if is_python:
        try:
            tree = ast.parse(python)
        except SyntaxError:
            tree = None
        if tree is not None:
            visitor = _Visitor(set(aliases) | protected_aliases(tree))
            visitor.visit(tree)
            found += visitor.found
        else:
            for i, line in enumerate(python.split("\n"), start=1):
                found += [(i, reason) for pattern, reason in REGEX_CHECKS if pattern.search(line)]
    if "NBGRADER" in source and not any(r == NBGRADER_ENV for _, r in found):  # e.g. inside %env or a magic
        line = next(i for i, text in enumerate(source.split("\n"), start=1) if "NBGRADER" in text)
        found.append((line, NBGRADER_ENV))
    return sorted(set(found))
