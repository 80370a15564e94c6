"""Data: the datasets as uint8 arrays, image folders, the generated dataset, splits, the GPU loader
and augmentation. `helpers.data.course_data` is what notebooks and commands load.

    datasets.py    load_dataset / course_data: CIFAR-10, CIFAR-100, generated, your own folder
    imagefolder.py reading <root>/<split>/<class>/<image> trees and .tar.gz archives
    synthetic.py   the generated 10-class dataset of shapes (works offline)
    split.py       stratified train/validation splits and subsets, per-channel mean/std
    normalize.py   uint8 images to normalized float tensors and back
    augment.py     crops, flips, cutout, MixUp/CutMix on batches on the device
    loader.py      GpuLoader: batches gathered on the device, no worker processes
    export.py      writing a dataset out as an image folder
"""
from .datasets import (  # noqa: F401  (helpers.data was one module; its names stay here)
    CACHE_VERSION, DATASETS, REDUCED_PER_CLASS, DataError, ImageData, course_data, dataset_names, load_dataset,
    reduced,
)
