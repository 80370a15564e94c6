"""The course's helpers: data, augmentation, models, fast training, metrics, plots and grading.

Notebooks, the command line (`python -m helpers`) and the tests all call this package, so
each thing is written once. Jupyter-only pieces (nbgrader, ipywidgets) are imported lazily,
so `helpers` imports and trains on a bare GPU machine with only torch installed.
"""
__version__ = "0.1.0"

from .config import autograding, data_dir, fast_mode, pick_device, seed_everything  # noqa: E402
from .data import DataError, ImageData, course_data, load_dataset  # noqa: E402
from .export import export_image_folder  # noqa: E402
from .labelling import LabellingTool, export_splits, make_sample_folder  # noqa: E402
from .loader import GpuLoader  # noqa: E402
from .split import channel_mean_std, stratified_subset, train_val_split  # noqa: E402
