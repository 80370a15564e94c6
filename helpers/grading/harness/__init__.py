"""The trusted grading harness: hidden pytest tests outside the kernel, the student's code in a sandbox.

- `program`: which cells run (release setup/given cells, the student's answer cells, a canary);
- `worker`: runs them in the sandbox and serves calls; `session`: the trusted client (`student`);
- `wire`: the data-only frames between the two; `deny`: deny-lists as a view of the environment;
- `plugin`: the `@block` marker and the pytest plugin; `run`: one student, one fresh process;
- `monitor`, `paste`, `static`: runtime tamper evidence, pasted reference code and a static look
  at the answer cells, for the TA.
See HARNESS.md for the design and how to write hidden tests.
"""


def block(grade_id: str, *, deny=(), timeout: float | None = None, batched: bool = False):
    """Mark a hidden test as deciding the points of nbgrader test cell `grade_id` (see plugin.block)."""
    from .plugin import block as _block
    return _block(grade_id, deny=deny, timeout=timeout, batched=batched)


def resolve_name(dotted: str):
    """The object a dotted name names: the longest importable module prefix, then attributes.

    ImportError when no prefix imports, AttributeError when an attribute is missing.
    """
    import importlib
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(f"cannot import {dotted}")
