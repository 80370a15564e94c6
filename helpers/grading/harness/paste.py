"""Pasted copies of reference code: functions and classes of an answer cell whose syntax tree
matches a reference's once names are abstracted away.

Both trees are normalized: docstrings, type annotations and decorators dropped; every local
identifier (arguments, assigned names, the def's own name and nested defs) renamed to a placeholder
in order of first appearance; names only read (globals such as `np`, builtins), attribute names,
keyword names, constants and default values kept. Each tree becomes a sequence of one token per
node (what `ast.dump` prints, without the context markers) and the two sequences are compared with
difflib's ratio. A copy with renamed variables and no docstring scores about 1.0; the honest
rewrites of the stratified split tried score about 0.5. Evidence for the TA, never points.
"""
from __future__ import annotations

import ast
import difflib
import functools
import inspect
import textwrap

from . import resolve_name

DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def pasted_references(source: str, references: list[str], threshold: float = 0.9) -> list[dict]:
    """Functions/classes in `source` (a student's answer cell) whose AST matches a reference's."""
    tree = _parse_cell(source)
    if tree is None:
        return []
    loaded = [(name, tokens) for name in references if (tokens := _reference_tokens(name)) is not None]
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, DEFS):
            continue
        tokens = _tokens(node)
        best_name, best = None, 0.0
        for name, reference in loaded:
            matcher = difflib.SequenceMatcher(None, tokens, reference, autojunk=False)
            if matcher.real_quick_ratio() >= threshold and matcher.quick_ratio() >= threshold:
                ratio = matcher.ratio()
                if ratio > best:
                    best_name, best = name, ratio
        if best_name is not None and best >= threshold:
            found.append({"name": node.name, "reference": best_name, "similarity": round(best, 3), "line": node.lineno})
    return found


def _parse_cell(source: str) -> ast.Module | None:
    """The cell's tree with IPython lines (%magic, !shell) replaced by `pass`; None if it still does not parse."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        lines.append(line[:len(line) - len(stripped)] + "pass" if stripped[:1] in ("%", "!") else line)
    try:
        return ast.parse("\n".join(lines))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


@functools.lru_cache(maxsize=None)
def _reference_tokens(dotted: str) -> tuple[str, ...] | None:
    """The normalized token sequence of a reference function or class, None if it cannot be loaded."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(resolve_name(dotted))))
    except Exception:  # noqa: BLE001 - a reference that cannot be loaded gives no finding
        return None
    node = next((n for n in tree.body if isinstance(n, DEFS)), None)
    return None if node is None else tuple(_tokens(node))


def _tokens(node: ast.AST) -> list[str]:
    """One token per node of the normalized tree, in source order."""
    names = _local_names(node)
    placeholders: dict[str, str] = {}

    def local(name: str) -> str:
        if name not in names:
            return name
        return placeholders.setdefault(name, f"v{len(placeholders)}")

    tokens = []
    stack = [node]  # depth first without recursion: a deeply nested cell cannot exhaust the stack
    while stack:
        item = stack.pop()
        if isinstance(item, ast.expr_context):
            continue
        label = "Assign" if isinstance(item, ast.AnnAssign) else type(item).__name__  # annotations ignored
        if isinstance(item, DEFS):
            label += " " + local(item.name)
        elif isinstance(item, ast.Name):
            label += " " + local(item.id)
        elif isinstance(item, ast.arg):
            label += " " + local(item.arg)
        elif isinstance(item, ast.ExceptHandler) and item.name:
            label += " " + local(item.name)
        elif isinstance(item, ast.alias):
            label += f" {item.name} {local(item.asname) if item.asname else ''}"
        elif isinstance(item, ast.Attribute):
            label += " " + item.attr
        elif isinstance(item, ast.keyword):
            label += f" {item.arg}"
        elif isinstance(item, ast.Constant):
            label += " " + repr(item.value)
        tokens.append(label)
        stack.extend(reversed(_children(item)))
    return tokens


def _children(node: ast.AST) -> list[ast.AST]:
    """Child nodes without docstrings, annotations and decorators."""
    skipped = {"annotation", "returns", "decorator_list", "type_comment"}
    children = []
    for field, value in ast.iter_fields(node):
        if field in skipped:
            continue
        if field == "body" and isinstance(node, DEFS) and _is_docstring(value[0] if value else None):
            value = value[1:]
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, ast.AST):
                children.append(item)
    return children


def _is_docstring(statement) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


def _local_names(node: ast.AST) -> set[str]:
    """Names the definition binds itself: its name, arguments, assigned names, nested defs, imports."""
    names = set()
    for item in ast.walk(node):
        if isinstance(item, DEFS):
            names.add(item.name)
        elif isinstance(item, ast.arg):
            names.add(item.arg)
        elif isinstance(item, ast.Name) and isinstance(item.ctx, (ast.Store, ast.Del)):
            names.add(item.id)
        elif isinstance(item, ast.ExceptHandler) and item.name:
            names.add(item.name)
        elif isinstance(item, ast.alias):
            names.add((item.asname or item.name).split(".")[0])
    return names
