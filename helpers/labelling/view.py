"""`LabellingTool`: the ipywidgets face of a LabelSession (image, neighbours, buttons, keys).

ipywidgets and ipyevents are imported only when the tool is drawn, so the session and the key
handler work (and are tested) without a kernel or a browser. Keys reach the tool while the mouse
is over it (ipyevents' rule), and JupyterLab's own shortcuts are held back meanwhile.
"""
from __future__ import annotations

import html
import io

from .keys import handle_key, key_help
from .session import LabelSession


def render(path, size: int) -> bytes:
    """PNG bytes of the image at `path` fitted into size x size: small images are enlarged with
    whole pixels (so 32x32 data stays sharp), large ones shrunk smoothly. No EXIF rotation: what
    is shown is what export_splits and predict read."""
    from PIL import Image
    with Image.open(path) as im:
        im.seek(0)
        im = im.convert("RGB")
        w, h = im.size
        if max(w, h) < size:
            f = max(1, size // max(w, h))
            im = im.resize((w * f, h * f), Image.NEAREST)
        else:
            im.thumbnail((size, size), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return buf.getvalue()


class LabellingTool:
    """Label a folder of images in a notebook: `LabellingTool("photos/", ["cat", "dog"])` as a cell's
    last line shows it. Labels go to labels.csv at once; `.session` holds the state."""

    def __init__(self, folder, classes, labels_csv=None, *, size: int = 360, thumb: int = 96,
                 verbose: bool = True):
        self.session = LabelSession(folder, classes, labels_csv, verbose=verbose)
        self.size, self.thumb = size, thumb
        self._cache: dict[tuple[str, int], bytes] = {}
        self._widget = None
        self.message = ""

    # what the notebook reads
    unreadable = property(lambda self: self.session.unreadable, doc="{path: why} of files that are not images")
    missing = property(lambda self: self.session.missing, doc="labelled paths whose files are gone")
    labels = property(lambda self: self.session.labels, doc="{path: class}, as in labels.csv")
    progress = property(lambda self: self.session.progress)

    def __repr__(self):
        return f"LabellingTool({str(self.session.folder)!r}: {self.session.progress})"

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)

    # ------------------------------------------------------------------ actions (buttons, keys, code)
    def key(self, key: str, **modifiers) -> str | None:
        """Press a key as the browser would send it (e.g. "a", "1", "Backspace") and redraw."""
        action = handle_key(self.session, key, **modifiers)
        if action:
            self._after(action)
        return action

    def _do(self, action: str, cls=None) -> None:
        if action == "label":
            self.session.label(cls)
        else:
            getattr(self.session, action)()
        self._after(action)

    def _after(self, action: str) -> None:
        s = self.session
        self.message = ("All images are labelled. Next: export_splits(...) writes splits.csv." if s.done
                        else f"saved to {s.labels_csv.name}" if action in ("label", "undo") else "")
        self.refresh()

    # ------------------------------------------------------------------ drawing
    def _png(self, rel: str, size: int) -> bytes | None:
        key = (rel, size)
        if key not in self._cache:
            try:
                self._cache[key] = render(self.session.folder / rel, size)
            except Exception as exc:  # a file that passed the scan but does not decode
                self.session.mark_unreadable(rel, f"{type(exc).__name__}: {exc}"[:200])
                self.message = f"{rel} cannot be decoded; it is listed in .unreadable and skipped."
                return None
            if len(self._cache) > 96:
                self._cache.pop(next(iter(self._cache)))
        return self._cache[key]

    @property
    def widget(self):
        """The ipywidgets box (built on first use)."""
        if self._widget is None:
            self._build()
        return self._widget

    def _build(self) -> None:
        import ipywidgets as w
        s = self.session
        self._header = w.HTML()
        self._image = w.Image(format="png", layout=w.Layout(width=f"{self.size}px", height=f"{self.size}px",
                                                              object_fit="contain"))
        self._before = [w.Image(format="png", layout=w.Layout(width=f"{self.thumb}px", height=f"{self.thumb}px",
                                                               object_fit="contain")) for _ in range(2)]
        self._after_thumbs = [w.Image(format="png", layout=w.Layout(width=f"{self.thumb}px",
                                                                    height=f"{self.thumb}px", object_fit="contain"))
                              for _ in range(2)]
        self._captions = [w.HTML() for _ in range(4)]
        self._class_buttons = []
        from .keys import class_keys
        keys = {}
        for k, c in class_keys(s.classes).items():
            keys.setdefault(c, []).append(k.upper())
        for c in s.classes:
            b = w.Button(description=f"{'/'.join(keys[c])}: {c}" if c in keys else c, tooltip=f"label as {c}")
            b.on_click(lambda _b, c=c: self._do("label", c))
            self._class_buttons.append(b)
        controls = []
        for action, text in (("undo", "\u21b6 undo"), ("skip", "skip"), ("next_unlabelled", "next unlabelled"),
                             ("prev", "\u25c0"), ("next", "\u25b6")):
            b = w.Button(description=text, layout=w.Layout(width="auto"))
            b.on_click(lambda _b, a=action: self._do(a))
            controls.append(b)
        self._controls = controls
        self._status = w.HTML()

        def column(img, cap):
            return w.VBox([img, cap], layout=w.Layout(align_items="center"))
        strip = w.HBox([column(self._before[0], self._captions[0]), column(self._before[1], self._captions[1]),
                        self._image,
                        column(self._after_thumbs[0], self._captions[2]),
                        column(self._after_thumbs[1], self._captions[3])],
                       layout=w.Layout(align_items="center"))
        box = w.VBox([self._header, strip, w.HBox(self._class_buttons), w.HBox(controls), self._status])
        try:
            from ipyevents import Event  # keyboard: optional, buttons work without it
            self._events = Event(source=box, watched_events=["keydown"], prevent_default_action=True,
                                 ignore_modifier_key_events=True)
            self._events.on_dom_event(lambda e: self.key(e.get("key", ""), ctrl=bool(e.get("ctrlKey")),
                                                         alt=bool(e.get("altKey")), meta=bool(e.get("metaKey"))))
            self._keys_note = "Keys (mouse over the tool): " + key_help(s.classes)
        except ImportError:
            self._events = None
            self._keys_note = "Keys need the ipyevents package (pip install ipyevents); the buttons work."
        self._widget = box
        self.refresh()

    def refresh(self) -> None:
        """Redraw from the session's state (cheap: images are cached)."""
        if self._widget is None:
            return
        s = self.session
        n_files = len(s.files)
        png = self._png(s.current, self.size) if s.files else None
        while png is None and s.files and s.current is not None:
            png = self._png(s.current, self.size)  # decode failures leave the session; try the next
        self._image.value = png or b""
        before, after = s.neighbours(2)
        slots = [(self._before, [None] * (2 - len(before)) + before),
                 (self._after_thumbs, after + [None] * (2 - len(after)))]
        captions = []
        for images, indices in slots:
            for img, i in zip(images, indices):
                rel = s.files[i] if i is not None else None
                img.value = (self._png(rel, self.thumb) or b"") if rel else b""
                captions.append(html.escape(s.labels.get(rel, "\u2013")) if rel else "")
        for cap, text in zip(self._captions, captions):
            cap.value = f"<small>{text}</small>"
        current = s.current or ""
        label = s.labels.get(current)
        self._header.value = (f"<b>{html.escape(s.progress)}</b> &nbsp; image {s.cursor + 1}/{len(s.files)}: "
                              f"<code>{html.escape(current)}</code> &rarr; "
                              f"<b>{html.escape(label) if label else 'unlabelled'}</b>"
                              f"<br><small>{html.escape(self._keys_note)}</small>")
        for b, c in zip(self._class_buttons, s.classes):
            b.button_style = "success" if c == label else ""
        self._status.value = f"<small>{html.escape(self.message)}</small>"
        if len(s.files) != n_files:  # a thumbnail failed to decode and left the list: draw again
            self.refresh()
