"""What `fit` shows while it trains: a tqdm bar over all steps, one line per epoch, live curves.

The bar counts steps on the host only (no GPU synchronization); its loss/accuracy figures change
once per epoch, when `fit` reads them anyway. `tqdm.auto` draws a widget in Jupyter and text in
a terminal. The live plot (notebooks only) redraws `helpers.plots.plot_history` in one display
slot that is updated in place, so the progress bar above it stays.
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


class Progress:
    """Progress display for `fit`: `step()` per batch, `epoch_end(row, history)` per epoch."""

    def __init__(self, total_steps: int, epochs: int, *, enabled: bool = True, live_plot: bool = False,
                 initial: int = 0):
        self.epochs = epochs
        self.enabled = enabled
        self.bar = None
        self._plot_handle = None
        self.live_plot = live_plot and _in_notebook()
        if enabled:
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
        """Show the epoch's figures on the bar, print them as a line, redraw the live curves."""
        if self.bar is not None:
            postfix = {"loss": f"{row['train_loss']:.3f}", "acc": f"{row['train_acc']:.3f}"}
            if row.get("val_acc") is not None:
                postfix["val_acc"] = f"{row['val_acc']:.3f}"
            postfix.update(lr=f"{row['lr']:.3g}", img_s=f"{row['images_per_s']:,.0f}")
            self.bar.set_postfix(postfix)
            self.bar.write(format_epoch(row, self.epochs))
        if self.live_plot:
            self._draw(history)

    def _draw(self, history) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        from .plots import plot_history
        fig = plot_history(history)
        if self._plot_handle is None:
            self._plot_handle = display(fig, display_id=True)
        else:
            self._plot_handle.update(fig)
        plt.close(fig)  # the displayed image stays; the figure object is freed

    def message(self, text: str) -> None:
        """Print a line without breaking the bar (when the display is on)."""
        if self.enabled:
            if self.bar is not None:
                self.bar.write(text)
            else:
                print(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
