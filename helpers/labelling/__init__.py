"""Collect your own data: label a folder of images in JupyterLab, then split and export it.

    tool = LabellingTool("photos/", ["cat", "dog"])   # keys A/B (or 1/2), every label saved at once
    export_splits("photos/labels.csv", image_folder="data/pets")   # splits.csv + an image folder

The state (`LabelSession`) and the keys (`handle_key`) are plain Python; only `LabellingTool`
needs ipywidgets (and ipyevents for keys), imported when it is drawn.
"""
from .keys import class_keys, handle_key, key_action
from .sample import make_sample_folder
from .session import LabelError, LabelSession, read_labels
from .splits import export_splits, load_labelled_splits, split_sizes
from .view import LabellingTool

__all__ = ["LabellingTool", "LabelSession", "LabelError", "export_splits", "load_labelled_splits",
           "make_sample_folder", "handle_key", "key_action", "class_keys", "read_labels", "split_sizes"]
