"""Deny-lists: what a block's spec forbids, made absent from the sandbox's view of the environment.

A rule names a top-level function or class (`helpers.data.split.train_val_split`,
`torchvision.transforms.v2.MixUp`), optionally one of its arguments
(`torch.nn.functional.cross_entropy:label_smoothing`), or a whole package (`sklearn`). For each
file that defines a denied name, `build_view` writes a copy in which that definition raises
`_CourseDeniedReference` naming the rule (or refuses a truthy value of the argument; a hidden
package raises ImportError naming the rule), and returns
bind mounts that lay the copy over the original and blank its cached byte code in `__pycache__`.
Patching in memory would not do: the student's code shares the worker's process.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from pathlib import Path

ALWAYS_HIDDEN = ("sklearn",)  # a test oracle; students never need it in a graded cell
EXCEPTION = "_CourseDeniedReference"


class DenyError(ValueError):
    """A rule that names nothing this environment defines (a typo in a hidden test)."""


@dataclass(frozen=True)
class Rule:
    target: str        # dotted name
    argument: str = ""  # with it: only a truthy value of this argument is refused
    block: str = ""     # the block whose spec forbids it (for the message)

    @classmethod
    def parse(cls, text: str, block: str = "") -> "Rule":
        target, _, argument = text.partition(":")
        return cls(target.strip(), argument.strip(), block)

    def message(self) -> str:
        what = f"{self.target}(..., {self.argument}=...)" if self.argument else self.target
        return (f"{what} is not allowed in the graded code of this assignment (rule of the "
                f"{self.block or 'assignment'} block: write it by hand, as its spec says)")


def _resolve(target: str):
    from . import resolve_name
    try:
        return resolve_name(target)
    except (ImportError, AttributeError) as exc:
        raise DenyError(f"deny rule {target!r}: {exc}") from None


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _raise_stmt(message: str) -> ast.stmt:
    return ast.parse(f"raise {EXCEPTION}({message!r})").body[0]


def _rewrite(source: str, rules: list[Rule], path: Path) -> str:
    tree = ast.parse(source)
    by_name = {}
    for rule in rules:
        by_name.setdefault(rule.target.rsplit(".", 1)[-1], []).append(rule)
    found = set()
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name not in by_name:
            continue
        for rule in by_name[node.name]:
            found.add(rule)
            if rule.argument:
                if isinstance(node, ast.ClassDef):
                    raise DenyError(f"deny rule {rule.target}:{rule.argument}: arguments are for functions only")
                names = {a.arg for a in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]}
                if rule.argument not in names:
                    raise DenyError(f"deny rule {rule.target}: it has no argument {rule.argument!r}")
                guard = ast.parse(f"if {rule.argument}:\n    raise {EXCEPTION}({rule.message()!r})").body[0]
                node.body.insert(0, guard)
            elif isinstance(node, ast.ClassDef):
                init = ast.parse(f"def __init__(self, *args, **kwargs):\n    raise {EXCEPTION}({rule.message()!r})")
                node.body = init.body
                node.decorator_list = []
            else:  # any arguments reach the refusal, so the message names the rule, not a TypeError
                node.body = [_raise_stmt(rule.message())]
                node.args = ast.arguments(posonlyargs=[], args=[], vararg=ast.arg("args"), kwonlyargs=[],
                                          kw_defaults=[], kwarg=ast.arg("kwargs"), defaults=[])
    missing = [r.target for r in rules if r not in found]
    if missing:
        raise DenyError(f"deny rules {missing}: no top-level definition of that name in {path}")
    header = ast.parse(f"class {EXCEPTION}(RuntimeError):\n    'Raised by a definition the grading harness denies.'")
    insert_at = 0
    while insert_at < len(tree.body) and _is_future_or_docstring(tree.body[insert_at], insert_at):
        insert_at += 1
    tree.body[insert_at:insert_at] = header.body
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def _is_future_or_docstring(node, index: int) -> bool:
    if isinstance(node, ast.ImportFrom) and node.module == "__future__":
        return True
    return index == 0 and isinstance(node, ast.Expr) and isinstance(getattr(node, "value", None), ast.Constant)


def build_view(rules: list[Rule], scratch: Path) -> list[tuple[str, str]]:
    """(source, target) read-only bind mounts that remove the denied definitions; `scratch` holds the copies.

    Raises DenyError when a rule names nothing that exists.
    """
    scratch = Path(scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    empty = scratch / "empty"
    empty.mkdir(exist_ok=True)
    empty.chmod(0o755)
    empty_file = scratch / "empty.pyc"
    empty_file.write_bytes(b"")
    empty_file.chmod(0o644)
    binds: list[tuple[str, str]] = []
    by_file: dict[Path, list[Rule]] = {}
    packages = set(ALWAYS_HIDDEN)
    for rule in rules:
        if "." not in rule.target:
            packages.add(rule.target)
            continue
        obj = _resolve(rule.target)
        try:
            path = Path(inspect.getsourcefile(inspect.unwrap(obj))).resolve()
        except TypeError as exc:
            raise DenyError(f"deny rule {rule.target}: not defined in Python source ({exc})") from exc
        by_file.setdefault(path, []).append(rule)
    for name in sorted(packages):
        folder = _package_dir(name)
        if folder is not None and folder.is_dir():
            stub = scratch / f"hidden-{name}"
            stub.mkdir(exist_ok=True)
            stub.chmod(0o755)
            (stub / "__init__.py").write_text(
                f"raise ImportError({Rule(name).message()!r})\n", encoding="utf-8")
            (stub / "__init__.py").chmod(0o644)
            binds.append((str(stub), str(folder)))
    for i, (path, file_rules) in enumerate(sorted(by_file.items())):
        copy = scratch / f"{i}-{path.name}"
        copy.write_text(_rewrite(path.read_text(encoding="utf-8"), file_rules, path), encoding="utf-8")
        copy.chmod(0o644)
        binds.append((str(copy), str(path)))
        # the original byte code must not be loadable either (marshal.loads of the cached .pyc)
        for pyc in sorted((path.parent / "__pycache__").glob(f"{path.stem}.*.pyc")):
            binds.append((str(empty_file), str(pyc)))
    return binds
