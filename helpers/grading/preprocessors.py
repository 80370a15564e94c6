"""nbgrader preprocessors of the course (imported by nbgrader_config.py; nbgrader is needed only here).

`CapOutputBytes` runs in the TA's process right after `Execute` during autograde: each cell's
outputs are cut at LIMITS.cell_output_bytes and the notebook's at LIMITS.notebook_output_bytes,
counting bytes (nbgrader's LimitOutput counts lines, so one 30 MB line passed it). The sandboxed
kernel's proxy (`sandbox_kernel.OutputCap`) already cuts them as they arrive; this is the same
rule applied to what was saved, so it also holds with COURSE_SANDBOX=off. An error output is never
removed (it is what makes a failed test score 0), only shortened.
"""
from __future__ import annotations

import json

from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Integer

from .sandbox import LIMITS
from .sandbox_kernel import ERROR_KEEP_BYTES, _cut_text


def output_bytes(output) -> int:
    """The size of one output as it would be stored (UTF-8 JSON)."""
    return len(json.dumps(output, ensure_ascii=False, default=str).encode("utf-8", "replace"))


def _note(scope: str, limit: int) -> str:
    return (f"\n[output cut: this {scope}'s output passed the grader's limit of {limit / 1e6:g} MB; "
            f"the rest was not kept]\n")


class CapOutputBytes(NbGraderPreprocessor):
    """Cut outputs at a byte budget per cell and per notebook, with a visible note where cut."""

    cell_bytes = Integer(LIMITS.cell_output_bytes, help="Most bytes of output kept per cell").tag(config=True)
    notebook_bytes = Integer(LIMITS.notebook_output_bytes, help="Most bytes of output kept per notebook").tag(config=True)

    def preprocess(self, nb, resources):
        total = self.cap_metadata(nb)
        for cell in nb.cells:
            if cell.get("cell_type") == "code" and cell.get("outputs"):
                cell.outputs, used = self.cap_cell(cell.outputs, self.notebook_bytes - total)
                total += used
        return nb, resources

    def cap_metadata(self, nb) -> int:
        """Widget state nbclient stores in the notebook's metadata counts too; dropped when over the
        cell limit. The bytes of metadata kept."""
        widgets = nb.metadata.get("widgets")
        if widgets is not None and output_bytes(widgets) > self.cell_bytes:
            del nb.metadata["widgets"]
            self.log.warning("Widget state dropped: over the %d-byte limit", self.cell_bytes)
        return output_bytes(nb.metadata.get("widgets", {}))

    def cap_cell(self, outputs: list, notebook_left: int) -> tuple[list, int]:
        """The outputs kept (in order) and the bytes they use."""
        kept, used, noted, errored = [], 0, False, False
        for output in outputs:
            if output.get("output_type") == "error":  # a failed test must stay failed: the first error is kept
                if errored and min(self.cell_bytes, notebook_left) - used <= 0:
                    continue
                errored = True
                if output_bytes(output) > ERROR_KEEP_BYTES:
                    output.evalue = _cut_text(str(output.get("evalue", "")), ERROR_KEEP_BYTES // 8)
                    tb = [str(line) for line in output.get("traceback", [])]
                    output.traceback = ([_cut_text(x, ERROR_KEEP_BYTES // 16) for x in tb[:3]]
                                        + ["[traceback cut by the grader's output limit]"]
                                        + [_cut_text(x, ERROR_KEEP_BYTES // 16) for x in tb[-3:]])
                kept.append(output)
                used += output_bytes(output)
                continue
            size = output_bytes(output)
            allowance = min(self.cell_bytes - used, notebook_left - used)
            if not noted and size <= allowance:
                kept.append(output)
                used += size
                continue
            if noted:
                continue
            noted = True
            scope, limit = (("cell", self.cell_bytes) if self.cell_bytes - used <= notebook_left - used
                            else ("notebook", self.notebook_bytes))
            note = _note(scope, limit)
            if output.get("output_type") == "stream":
                text = output.get("text", "")
                text = "".join(text) if isinstance(text, list) else str(text)
                room = max(0, allowance - (size - len(text.encode("utf-8", "replace"))) - 2 * len(note) - 256)
                output.text = _cut_text(text, room) + note
                kept.append(output)
            else:
                kept.append(NotebookNode(output_type="stream", name="stdout", text=note))
            used += output_bytes(kept[-1])
            self.log.warning("Output cut at the %s limit (%d bytes)", scope, limit)
        return kept, used
