"""Keyboard shortcuts of the labelling tool, as plain functions the widget and the tests share.

Classes: 1-9 then 0 for the first ten; with exactly two classes also A and B. Actions: Backspace
or Z undo, S skip, N next unlabelled, arrow keys previous/next.
"""
from __future__ import annotations

ACTION_KEYS = {"backspace": "undo", "z": "undo", "u": "undo", "s": "skip", "n": "next_unlabelled",
               "arrowleft": "prev", "arrowright": "next"}


def class_keys(classes) -> dict[str, str]:
    """{key: class}: "1".."9", "0" for the first ten classes; "a"/"b" too when there are two."""
    keys = {str((i + 1) % 10): c for i, c in enumerate(list(classes)[:10])}
    if len(classes) == 2:
        keys.update({"a": classes[0], "b": classes[1]})
    return keys


def key_action(key: str, classes, *, ctrl: bool = False, alt: bool = False, meta: bool = False):
    """What pressing `key` (a browser KeyboardEvent.key) does: ("label", class), ("undo", None), ...,
    or None for keys the tool leaves alone (any with Ctrl/Alt/Meta, except Ctrl+Z for undo)."""
    k = (key or "").lower()
    if ctrl or alt or meta:
        return ("undo", None) if ctrl and k == "z" and not (alt or meta) else None
    cls = class_keys(classes).get(k)
    if cls is not None:
        return ("label", cls)
    if k in ACTION_KEYS:
        return (ACTION_KEYS[k], None)
    return None


def handle_key(session, key: str, **modifiers) -> str | None:
    """Apply a key press to a LabelSession; returns the action taken ("label", "undo", ...) or None."""
    action = key_action(key, session.classes, **modifiers)
    if action is None:
        return None
    name, cls = action
    if name == "label":
        session.label(cls)
    else:
        getattr(session, name)()
    return name


def key_help(classes) -> str:
    """One line saying which key does what, for the tool's header."""
    keys = class_keys(classes)
    by_class = {}
    for k, c in keys.items():
        by_class.setdefault(c, []).append(k.upper())
    parts = [f"{'/'.join(ks)} {c}" for c, ks in by_class.items()]
    return ", ".join(parts) + "; Backspace/Z undo, S skip, N next unlabelled, \u2190/\u2192 browse"
