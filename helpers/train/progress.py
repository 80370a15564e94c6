"""What `fit` shows while it trains: a progress bar over all steps, one line per epoch, live curves.

The bar counts steps on the host only (no GPU synchronization); its loss/accuracy figures change
once per epoch, when `fit` reads them anyway. In a terminal the bar is tqdm's text bar and the
epoch lines are printed below it. In a notebook every part lives in its own display slot, made in
this order and then updated in place, so the output reads top to bottom however many epochs run:
the bar (an ipywidgets bar while it runs, replaced by its final text line when it closes, so a
reopened notebook, whose widget state is gone, still shows it), the epoch lines (one text block),
the live curves (`helpers.eval.plots.plot_history`).
"""
from __future__ import annotations


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where a figure can be displayed and updated)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def format_epoch(row: dict, epochs: int) -> str:
    """One line per epoch: 'epoch 3/10  train 1.234 / 55.0%  val 1.100 / 60.2%  lr 0.0400  ...'."""
    width = len(str(epochs))
    text = f"epoch {row['epoch']:>{width}}/{epochs}  train {row['train_loss']:.4f} / {100 * row['train_acc']:5.1f}%"
    if row.get("val_acc") is not None:
        text += f"  val {row['val_loss']:.4f} / {100 * row['val_acc']:5.1f}%"
    return text + f"  lr {row['lr']:.4g}  {row['seconds']:.1f} s  {row['images_per_s']:,.0f} img/s"


def _text(lines) -> dict:
    """A display bundle of plain text only: it renders and saves as text, with no widget behind it."""
    return {"text/plain": "\n".join(lines)}


def _widget_bar(total_steps: int, initial: int):
    """(tqdm notebook bar, its display handle), or None without ipywidgets (then a text bar is used)."""
    try:
        import ipywidgets  # noqa: F401
        from IPython.display import display
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:
        return None
    bar = notebook_tqdm(total=total_steps, initial=initial, unit="step", desc="training", display=False)
    return bar, display(bar.container, display_id=True)


class Progress:
    """Progress display for `fit`: `step()` per batch, `epoch_end(row, history)` per epoch, `close()`."""

    def __init__(self, total_steps: int, epochs: int, *, enabled: bool = True, live_plot: bool = False,
                 initial: int = 0):
        self.epochs = epochs
        self.enabled = enabled
        self.bar = None
        self.lines: list[str] = []
        self._bar_handle = None
        self._lines_handle = None
        self._plot_handle = None
        self.notebook = _in_notebook()
        self.live_plot = live_plot and self.notebook
        if enabled:
            made = _widget_bar(total_steps, initial) if self.notebook else None
            if made is not None:
                self.bar, self._bar_handle = made
            else:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total_steps, initial=initial, unit="step", dynamic_ncols=True,
                                desc="training")

    def start_epoch(self, epoch: int) -> None:
        """Show which epoch the coming steps belong to (1-based)."""
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch}/{self.epochs}", refresh=False)

    def step(self, n: int = 1) -> None:
        """Count finished steps (host-side only; tqdm redraws at most a few times a second)."""
        if self.bar is not None:
            self.bar.update(n)

    def epoch_end(self, row: dict, history) -> None:
        """Show the epoch's figures on the bar, add them as a line, redraw the live curves."""
        if self.bar is not None:
            postfix = {"loss": f"{row['train_loss']:.3f}", "acc": f"{row['train_acc']:.3f}"}
            if row.get("val_acc") is not None:
                postfix["val_acc"] = f"{row['val_acc']:.3f}"
            postfix.update(lr=f"{row['lr']:.3g}", img_s=f"{row['images_per_s']:,.0f}")
            self.bar.set_postfix(postfix)
        self.message(format_epoch(row, self.epochs))
        if self.live_plot:
            self._draw(history)

    def _draw(self, history) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        from ..eval.plots import plot_history
        fig = plot_history(history)
        if self._plot_handle is None:
            self._plot_handle = display(fig, display_id=True)
        else:
            self._plot_handle.update(fig)
        plt.close(fig)  # the displayed image stays; the figure object is freed

    def message(self, text: str) -> None:
        """Add a line (when the display is on): in a notebook to the one text block of epoch lines
        (so lines stay in order above the live curves), elsewhere printed without breaking the bar."""
        if not self.enabled:
            return
        self.lines.append(text)
        if self.notebook:
            from IPython.display import display
            if self._lines_handle is None:
                self._lines_handle = display(_text(self.lines), raw=True, display_id=True)
            else:
                self._lines_handle.update(_text(self.lines), raw=True)
        elif self.bar is not None:
            self.bar.write(text)
        else:
            print(text)

    def close(self) -> None:
        """Close the bar; in a notebook replace its widget by the bar's last state as text."""
        if self.bar is None:
            return
        bar, self.bar = self.bar, None
        bar.close()
        if self._bar_handle is not None:
            self._bar_handle.update(_text([bar_text(bar)]), raw=True)
            container = getattr(bar, "container", None)
            if container is not None:  # free the widget models: nothing shows them any more
                for widget in (*container.children, container):
                    widget.close()


def bar_text(bar) -> str:
    """A tqdm bar's current state as one line of text ('epoch 3/3: 100%|██████████| 72/72 [...]')."""
    state = dict(bar.format_dict)
    state["ncols"] = None  # no terminal width: the bar's default width
    return bar.format_meter(**state)
