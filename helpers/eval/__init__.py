"""Evaluation: what a trained model does on images, measured, explained and drawn.

    inference.py  the one inference path: normalization, test-time views, autocast, batched logits
    predictor.py  Predictor: a checkpoint's model with its mean/std, classes and temperature
    evaluate.py   predict, temperature scaling, the misclassified examples (what notebooks call)
    metrics.py    accuracy, confusion matrix, precision/recall/F1, top-k, calibration, ROC
    explain.py    Grad-CAM and FGSM
    plots.py      curves, confusion matrices, image grids, reliability diagrams (saved atomically)
"""
