"""The course's helpers: data, augmentation, models, fast training, metrics, plots and grading.

Notebooks, the command line (`python -m helpers`) and the tests all call this package, so
each thing is written once. Jupyter-only pieces (nbgrader, ipywidgets) are imported lazily,
so `helpers` imports and trains on a bare GPU machine with only torch installed.
"""
__version__ = "0.1.0"
