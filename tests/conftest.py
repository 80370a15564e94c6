"""Shared test settings: offline, reduced mode, a non-interactive plot backend."""
import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("COURSE_OFFLINE", "1")
