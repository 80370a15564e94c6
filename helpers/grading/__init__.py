"""Grading machinery around nbgrader: the instructor's round trip and simulated submissions.

- `helpers.grading.course`: make a course folder, generate the release, validate, submit,
  autograde, read grades, feedback and export, all through nbgrader's Python API; keeps
  release/ equal to what `nbgrader generate_assignment` makes of source/.
- `helpers.grading.simulate`: student submissions built from the release notebooks (solution,
  blank, tampered) and the registry of one wrong answer per assignment.

Nothing here imports nbgrader at import time, so `helpers` works on a machine with only torch.
"""
