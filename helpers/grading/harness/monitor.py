"""Runtime tamper evidence inside the worker: what a cell changed that could switch off or fake checks.

The worker runs the setup and given cells, calls `TamperMonitor.baseline()`, then runs every later
cell through `TamperMonitor.run_cell`. The baseline holds IPython's hooks (AST and input
transformers, event callbacks, custom exception handling, the shell's run/show methods), the
attributes of the watched modules, the watched global names and the sys hooks. While a cell runs,
a trace function follows only the cell's own top-level frames and compares that state with the
baseline after every line, so each change is reported once, at the line of the cell after which it
was first seen. An audit hook reports `sys.settrace` calls and replaced code or defaults of
watched functions (`f.__code__ = ...`) at the line that made them. When a cell stops the tracing
(`sys.settrace(None)`) or runs more than MAX_LINE_CHECKS top-level lines, its later changes are
found by one check after the cell, with line None.

Evidence for the TA, not a guarantee: the student's code shares this process and could find and
silence the monitor itself. The checks only compare identities: they never call the student's
code (no ==, repr or properties of the student's objects).
"""
from __future__ import annotations

import builtins
import operator
import os
import sys
import types

from ...moved import MOVED

# Old module names (helpers.metrics is helpers.eval.metrics), copied at import, before any student code.
_OLD_NAMES = dict(MOVED)

MAX_LINE_CHECKS = 5000  # per cell; then one check after the cell
# Shell methods whose rebinding (on the instance or a class) changes how cells run or report errors.
SHELL_METHODS = {
    "showtraceback": "custom_exc", "showsyntaxerror": "custom_exc", "run_cell": "custom_exc",
    "run_cell_async": "custom_exc", "run_ast_nodes": "custom_exc", "run_code": "custom_exc",
    "transform_cell": "input_transformer", "transform_ast": "ast_transformer",
}
TRANSFORMER_MANAGER_LISTS = ("cleanup_transforms", "line_transforms", "token_transformers")
WATCHED_DUNDERS = frozenset({"__import__", "__build_class__"})  # other dunders change by themselves
FUNCTION_INTERNALS = frozenset({"__code__", "__defaults__", "__kwdefaults__"})
# Event callbacks that libraries register on their own (importing pyplot, %matplotlib inline).
LIBRARY_CALLBACKS = (("matplotlib.pyplot", "_draw_all_if_interactive"),
                     ("matplotlib_inline.backend_inline", "flush_figures"),
                     ("matplotlib_inline.backend_inline", "configure_once"))
MISSING = object()

# Captured at import, before any student code, so that rebinding sys.settrace cannot blind the monitor.
_settrace, _gettrace, _getprofile = sys.settrace, sys.gettrace, sys.getprofile
_active = None  # the _CellRun in progress, for the audit hook
_audit_installed = False


def canary_swallowed(result) -> bool:
    """True when the canary cell (it always raises under grading) came back without an error:
    something was swallowing the errors of cells."""
    return result.error_in_exec is None and result.error_before_exec is None


def _describe(obj) -> str:
    """A short name for an object, read without running any of its code (no repr, no properties)."""
    if obj is MISSING:
        return "nothing"
    if type(obj) is types.MethodType:
        obj = obj.__func__
    if type(obj) in (types.FunctionType, types.BuiltinFunctionType):
        return f"{_text(obj.__module__)}.{_text(obj.__qualname__)}"
    if issubclass(type(obj), type):
        return f"class {_class_name(obj)}"
    return f"a {_class_name(type(obj))} object"


def _class_name(cls: type) -> str:
    return f"{_text(type.__dict__['__module__'].__get__(cls))}.{_text(type.__dict__['__qualname__'].__get__(cls))}"


def _text(value) -> str:
    """A name only if it is a plain str (formatting anything else could run the student's code)."""
    return value if type(value) is str else "?"


def _is_bound(value, owner, func) -> bool:
    return type(value) is types.MethodType and value.__self__ is owner and value.__func__ is func


def _static(obj, name: str) -> tuple:
    """(value in the instance dict, value in the first class dict of the MRO) of an attribute."""
    own = vars(obj).get(name, MISSING)
    for cls in type(obj).__mro__:
        if name in vars(cls):
            return own, vars(cls)[name]
    return own, MISSING


def _entries(value) -> list:
    """The items of a hook list, read from the list itself (a list subclass cannot hide any); none of
    anything else (its replacement is reported)."""
    return list.copy(value) if issubclass(type(value), list) else []


def _own_failure(exc: BaseException) -> bool:
    """True when an exception was raised by the monitor's own code, not by a signal handler
    (the worker's cell time-out) that happened to run inside it."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is None or tb.tb_frame.f_code.co_filename == __file__


def _audit(event: str, args: tuple) -> None:
    """Notes sys.settrace calls (they end the line tracing) and reports replaced internals of watched functions."""
    run = _active
    if run is None or run.stopping:
        return
    try:
        if event == "sys.settrace":
            if run.settrace_line is MISSING:  # judged after the cell: Python calls it too when a tracer raises
                run.settrace_line = run.current_line()
        elif event == "object.__setattr__" and len(args) == 3 and type(args[0]) is types.FunctionType:
            func, name = args[0], args[1]
            if name in FUNCTION_INTERNALS and run.monitor._watches(func.__module__):
                run.monitor._report(run.cell_id, run.current_line(), "patched_attribute", ("function", id(func), name),
                                    f"{_describe(func)}.{name} replaced")
    except Exception as exc:  # an audit hook that raises would abort the audited operation
        if not _own_failure(exc):
            raise
        run.monitor._failed(run.cell_id, exc)


class _CellRun:
    """Tracing state of one cell: its file name, the top-level line running now, checks made."""

    def __init__(self, monitor: TamperMonitor, cell_id: str, cell_files):
        self.monitor, self.cell_id = monitor, cell_id
        self.cell_files = cell_files  # IPython's names of compiled cells (a dict), None if unknown
        self.filename = None
        self.line = None
        self.checks = 0
        self.capped = False  # MAX_LINE_CHECKS reached: the monitor stopped tracing
        self.stopping = False  # the monitor itself is calling sys.settrace
        self.settrace_line = MISSING  # the line running when sys.settrace was first called
        self.tracer = self.trace  # one bound method, so that sys.gettrace() can be compared by identity

    def current_line(self):
        """The top-level line running now, None once tracing stopped."""
        return None if self.capped or self.settrace_line is not MISSING else self.line

    def trace(self, frame, event, arg):
        """Global trace function: follows only the cell's top-level frames (one per statement)."""
        code = frame.f_code
        if code.co_name != "<module>":
            return None
        if self.filename is None:
            if not self.is_cell_file(code.co_filename):
                return None
            self.filename = code.co_filename  # the first cell frame after run_cell starts
        elif code.co_filename != self.filename:
            return None
        return self.trace_line

    def is_cell_file(self, filename: str) -> bool:
        """True for a name IPython compiled a cell under (`<ipython-input-...>` or a temp file)."""
        if self.cell_files is not None:
            return filename in self.cell_files
        return not os.path.isfile(filename)

    def trace_line(self, frame, event, arg):
        """Local trace function: checks after each line of the cell's top-level code."""
        if self.capped:
            return None
        if event in ("line", "return"):
            self.checks += 1
            if self.checks > MAX_LINE_CHECKS:
                self.capped, self.stopping = True, True
                _settrace(None)
                self.stopping = False
                return None
            self.monitor._check(self.cell_id, self.line, in_cell=True)
            if event == "line":
                self.line = frame.f_lineno
        return self.trace_line

    def raised_through_tracer(self, error) -> bool:
        """True when the cell's error passed through this tracer (a time-out signal that arrived in it):
        Python then removed the tracer itself, with a sys.settrace call the cell did not make."""
        if not issubclass(type(error), BaseException):
            return False
        tb = BaseException.__traceback__.__get__(error)  # not error.__traceback__: that could run its code
        while tb is not None:
            if tb.tb_frame.f_code in (_CellRun.trace.__code__, _CellRun.trace_line.__code__):
                return True
            tb = tb.tb_next
        return False


class TamperMonitor:
    """Records, with cell and line, what a cell changed that could switch off or fake checks."""

    def __init__(self, shell, watched_names=(),
                 watched_modules=("builtins", "numpy", "torch", "torch.nn", "torch.nn.functional", "helpers",
                                  "helpers.checks")):
        self.shell = shell
        self.watched_names = tuple(watched_names)
        self.watched_modules = tuple(watched_modules)
        self.events: list[dict] = []
        self._run_cell = type(shell).run_cell  # the class's own, even if a cell rebinds shell.run_cell
        self._seen: set = set()
        self._base = None
        self._modules: list[list] = []  # [name, module, baseline vars, ignored names, keys and values last seen]

    # ------------------------------------------------------------------ public
    def baseline(self) -> None:
        """Snapshot after the trusted setup/given cells: IPython hooks, watched module attributes,
        watched global names."""
        try:
            self._take_baseline()
        except Exception as exc:  # noqa: BLE001 - without a baseline the cells run unwatched
            self._base = None
            self._failed("baseline", exc)

    def _take_baseline(self) -> None:
        shell = self.shell
        manager, events = shell.input_transformer_manager, shell.events
        self._base = {
            "lists": {label: (kind, value, _entries(value))
                      for label, (kind, value) in self._hook_lists(manager, events).items()},
            "manager": manager, "events": events,
            "class": type(shell),
            "methods": {name: _static(shell, name) for name in SHELL_METHODS},
            "custom_exceptions": vars(shell).get("custom_exceptions", ()),
            "CustomTB": vars(shell).get("CustomTB", MISSING),
            "names": {name: shell.user_ns[name] for name in self.watched_names if name in shell.user_ns},
            "profile": _getprofile(),
            "excepthook": sys.excepthook, "displayhook": sys.displayhook,
            "shell_excepthook": shell.excepthook, "shell_displayhook": shell.displayhook,
        }
        trap_names = set(getattr(shell.builtin_trap, "auto_builtins", ()))  # IPython swaps these during cells
        self._modules = []
        for name in self.watched_modules:
            module = sys.modules.get(name)
            if module is not None:
                saved = dict(vars(module))
                ignored = trap_names if module is builtins else set()
                self._modules.append([name, module, saved, ignored, list(saved), list(saved.values())])

    def run_cell(self, cell_id: str, source: str):
        """shell.run_cell(source, store_history=False) with line attribution; returns (ExecutionResult, events)."""
        global _active, _audit_installed
        if self._base is None:  # no baseline yet: a trusted cell
            return self._run_cell(self.shell, source, store_history=False), []
        if not _audit_installed:
            sys.addaudithook(_audit)
            _audit_installed = True
        start = len(self.events)
        cell_files = getattr(self.shell.compile, "_filename_map", None)
        run = _CellRun(self, cell_id, cell_files if issubclass(type(cell_files), dict) else None)
        previous = _gettrace()
        result = None
        _settrace(run.tracer)
        _active = run
        try:
            result = self._run_cell(self.shell, source, store_history=False)
        finally:
            _active = None
            if run.settrace_line is MISSING and not run.capped and _gettrace() is not run.tracer:
                run.settrace_line = run.line  # a call the audit hook did not see
            _settrace(previous)
            error = getattr(result, "error_in_exec", None)
            if run.settrace_line is not MISSING and not run.raised_through_tracer(error):
                self._report(cell_id, run.settrace_line, "patched_attribute", ("sys.settrace", cell_id),
                             "sys.settrace called: the cell replaced or removed the trace function")
            self._check(cell_id, None)
        return result, self.events[start:]

    # ------------------------------------------------------------------ checks
    def _hook_lists(self, manager, events) -> dict:
        """label -> (kind, list) for IPython's transformer lists and event callback lists. The transformer
        manager and the event manager are the baseline's: a replacement is reported, never read."""
        shell = self.shell
        lists = {"shell.ast_transformers": ("ast_transformer", shell.ast_transformers),
                 "shell.input_transformers_post": ("input_transformer", shell.input_transformers_post)}
        for name in TRANSFORMER_MANAGER_LISTS:  # cleanup_transforms is shell.input_transformers_cleanup
            lists[f"shell.input_transformer_manager.{name}"] = ("input_transformer", getattr(manager, name, None))
        callbacks = getattr(events, "callbacks", None)
        for event, value in (dict.items(callbacks) if issubclass(type(callbacks), dict) else ()):
            lists[f"{event} callbacks"] = ("event_callback", value)
        return lists

    def _differences(self):
        """(kind, key, detail) for every difference from the baseline; key says what is one change."""
        shell, base = self.shell, self._base
        if shell.events is not base["events"]:
            yield "event_callback", ("events",), "shell.events replaced"
        if shell.input_transformer_manager is not base["manager"]:
            yield "input_transformer", ("manager",), "shell.input_transformer_manager replaced"
        now_lists = self._hook_lists(base["manager"], base["events"])
        for label, (kind, base_value, base_entries) in base["lists"].items():
            _, value = now_lists.get(label, (kind, None))
            if value is not base_value:
                yield kind, (label, "replaced"), f"{label} replaced"
            entries = _entries(value)
            now_ids, base_ids = set(map(id, entries)), set(map(id, base_entries))
            for entry in entries:
                if id(entry) not in base_ids and not (kind == "event_callback" and self._library_callback(entry)):
                    yield kind, (label, "added", id(entry)), f"{_describe(entry)} registered in {label}"
            if kind != "event_callback":
                for entry in base_entries:
                    if id(entry) not in now_ids:
                        yield kind, (label, "removed", id(entry)), f"{_describe(entry)} removed from {label}"
        if type(shell) is not base["class"]:
            yield "custom_exc", ("class",), "the shell's class replaced"
        for name, kind in SHELL_METHODS.items():
            own, inherited = _static(shell, name)
            base_own, base_inherited = base["methods"][name]
            if own is not base_own:
                yield kind, ("method", name, "instance"), f"shell.{name} rebound on the instance to {_describe(own)}"
            if inherited is not base_inherited:
                yield kind, ("method", name, "class"), f"{name} rebound on the shell's class to {_describe(inherited)}"
        custom = vars(shell).get("custom_exceptions", ())
        if custom is not base["custom_exceptions"] and (type(custom) is not tuple or custom):
            names = ", ".join(_describe(c) for c in custom) if type(custom) is tuple else _describe(custom)
            yield "custom_exc", ("custom_exceptions", id(custom)), f"custom exception handler for ({names})"
        if vars(shell).get("CustomTB", MISSING) is not base["CustomTB"]:
            yield "custom_exc", ("CustomTB", id(vars(shell).get("CustomTB"))), "shell.CustomTB replaced"
        yield from self._name_changes()
        yield from self._sys_changes()
        yield from self._module_changes()

    def _name_changes(self):
        namespace = self.shell.user_ns
        for name, value in self._base["names"].items():
            now = dict.get(namespace, name, MISSING) if issubclass(type(namespace), dict) else MISSING
            if now is not value:
                change = "deleted" if now is MISSING else f"rebound to {_describe(now)}"
                yield "rebound_name", ("name", name), f"global {name!r} {change}"

    def _sys_changes(self):
        base = self._base
        if _getprofile() is not base["profile"]:
            yield "patched_attribute", ("sys.setprofile", id(_getprofile())), "sys.setprofile: profile function changed"
        shell_hook = base["shell_excepthook"]  # IPython installs its own while a statement runs
        hook = sys.excepthook
        if hook is not base["excepthook"] and not _is_bound(hook, shell_hook.__self__, shell_hook.__func__):
            yield "patched_attribute", ("sys.excepthook", id(hook)), f"sys.excepthook replaced by {_describe(hook)}"
        hook = sys.displayhook
        if hook is not base["displayhook"] and hook is not base["shell_displayhook"]:
            yield "patched_attribute", ("sys.displayhook", id(hook)), f"sys.displayhook replaced by {_describe(hook)}"

    def _module_changes(self):
        """Attributes of the watched modules rebound, added or deleted (new submodules aside)."""
        for entry in self._modules:
            name, module, saved, ignored, last_keys, last_values = entry
            if sys.modules.get(name) is not module:
                yield "patched_attribute", ("module", name), f"sys.modules[{name!r}] replaced"
            now = vars(module)
            if len(now) == len(last_keys) and all(map(operator.is_, now, last_keys)) \
                    and all(map(operator.is_, now.values(), last_values)):
                continue  # the same as at the last check (identities only: no student __eq__ runs)
            for attr in sorted({k for k in saved if type(k) is str} | {k for k in now if type(k) is str}):
                if attr in ignored or (attr.startswith("__") and attr.endswith("__") and attr not in WATCHED_DUNDERS):
                    continue
                old, new = saved.get(attr, MISSING), now.get(attr, MISSING)
                if old is new:
                    continue
                if old is MISSING:
                    if type(new) is types.ModuleType and _text(vars(new).get("__name__")) == f"{name}.{attr}":
                        continue  # `import numpy.testing` binds the submodule on its package
                    moved_to = _OLD_NAMES.get(f"{name}.{attr}")
                    if moved_to and type(new) is types.ModuleType and _text(vars(new).get("__name__")) == moved_to \
                            and sys.modules.get(moved_to) is new:
                        continue  # `import helpers.metrics` binds helpers.eval.metrics under its old name
                    detail = f"{name}.{attr} added: {_describe(new)}"
                elif new is MISSING:
                    detail = f"{name}.{attr} deleted"
                else:
                    detail = f"{name}.{attr} rebound to {_describe(new)}"
                yield "patched_attribute", ("attribute", name, attr), detail
            entry[4], entry[5] = list(now), list(now.values())  # all reported: next time, a quick compare

    def _check(self, cell_id: str, line, in_cell: bool = False) -> None:
        """Reports every difference from the baseline not reported before. Its own failures become
        events; inside a cell, an exception from elsewhere (the worker's time-out signal, arriving
        during the check) goes on to the cell it belongs to."""
        try:
            for kind, key, detail in self._differences():
                self._report(cell_id, line, kind, key, detail)
        except Exception as exc:
            if in_cell and not _own_failure(exc):
                raise
            self._failed(cell_id, exc)

    # ------------------------------------------------------------------ helpers
    def _report(self, cell_id: str, line, kind: str, key, detail: str) -> None:
        if key not in self._seen:
            self._seen.add(key)
            self.events.append({"cell": cell_id, "line": line, "kind": kind, "detail": detail})

    def _failed(self, cell_id: str, exc: Exception) -> None:
        """A monitor_error event for a failure of the monitor (or of student code it ran into)."""
        try:
            message = f"{_class_name(type(exc))}: {BaseException.__str__(exc)}"[:300]
        except Exception:  # noqa: BLE001 - an exception of the student's may not even print
            message = _class_name(type(exc))
        self._report(cell_id, None, "monitor_error", ("error", message), message)

    def _library_callback(self, callback) -> bool:
        return any(callback is vars(sys.modules[module]).get(name)
                   for module, name in LIBRARY_CALLBACKS if module in sys.modules)

    def _watches(self, module_name) -> bool:
        return type(module_name) is str and any(module_name == name or module_name.startswith(name + ".")
                                                for name in self.watched_modules)
