"""Grading machinery around nbgrader, for instructors and TAs.

- `course`: make a course folder, generate the release, validate, submit, autograde, read
  grades, feedback and export through nbgrader's Python API; keeps release/ equal to what
  `nbgrader generate_assignment` makes of source/ (`python -m helpers check-release`).
- `simulate`: simulated submissions built from the release notebooks (solution, blank,
  tampered) and the registry of one wrong answer per assignment.
- `challenge`: the contract between the 06_challenge notebook and the scoring (file names,
  score cells, saving the checkpoint, loading it instead of training during autograde).
- `tiers`: the grading tiers, in one place (another table only from a TA-only `--tiers` file).
- `sandbox`, `sandbox_kernel`: the bubblewrap sandbox all student code runs in (SANDBOX.md).
- `harness`: the hidden tests (hidden_tests/<assignment>/) run in a trusted pytest process
  against the student's answer cells in a sandboxed worker; block points go to the gradebook
  (HARNESS.md).
- `testsets`, `integrity`: pinned test-set digests; hashes of the course around a grading run.
- `hostile`: a simulated hostile class, one student per attack on the grader.
- `score`, `score_worker`: score one checkpoint in a fresh process with a time limit.
- `gradebook`: write scores and reasons into the gradebook; merge shard gradebooks.
- `tamper`, `tamper_code`: a static scan of submissions for in-kernel tampering.
- `report`: CSVs, the class histogram and printed tables; `cli`: `python -m helpers grade`
  (hidden tests for every assignment, model scores for the challenge).

Nothing here imports nbgrader at import time, so `helpers` works on a machine with only torch.
"""
