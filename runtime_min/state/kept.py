"""Kept state: each kept input takes, in the next run, the value its paired output had in the last one (zeros at
first) unless the run feeds it. Where the one partition reading the input writes the output into the input's own
buffer (`Executable.keep`: the GPU arena, an onnxruntime I/O binding), the value never leaves that processor;
otherwise the plan holds it in host memory and feeds it, as a caller would."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from runtime_min.errors import InputError

if TYPE_CHECKING:
    from runtime_min.executor import Step
    from runtime_min.manifest import TensorSpec


class KeptState:
    """The kept pairs of one plan: those its processors keep (`resident`) and those held here (`held`)."""

    def __init__(self, inputs: list[TensorSpec], outputs: list[TensorSpec], steps: list[Step], pairs: Any) -> None:
        specs = {s.name: s for s in inputs}, {s.name: s for s in outputs}
        if not isinstance(pairs, dict) or not all(isinstance(o, str) for o in pairs.values()):
            raise InputError("keep_state takes a dict of input name -> output name")
        for name, output in pairs.items():
            i, o = specs[0].get(name), specs[1].get(output)
            if i is None or o is None or (i.dtype, i.shape) != (o.dtype, o.shape):
                raise InputError(
                    f"cannot keep {name!r} as {output!r}: give a plan input and a plan output of the same dtype "
                    "and shape"
                )
        self.pairs = dict(pairs)
        self.resident: dict[str, Step] = {}  # kept input -> the step whose processor keeps it
        self.held: dict[str, np.ndarray] = {}
        for name, output in self.pairs.items():
            step = _sole_reader(steps, name, output)
            if step is not None and step.executable.keep(name, output):
                step.input_names.remove(name)
                step.kept.add(name)
                self.resident[name] = step
            else:
                self.held[name] = np.zeros(specs[0][name].shape, specs[0][name].dtype)
        self.optional = frozenset(self.pairs)  # inputs a run may leave out
        self.where = {name: self.resident[name].device if name in self.resident else "host" for name in self.pairs}

    def feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The run's feeds with each held input it leaves out added."""
        return feeds | {name: value for name, value in self.held.items() if name not in feeds}

    def after(self, values: dict[str, np.ndarray], wanted: list[str]) -> None:
        """After a run: held inputs take their outputs' new values; the kept outputs in `wanted` are read back."""
        for name in self.held:
            self.held[name] = values[self.pairs[name]]
        for name, step in self.resident.items():
            if self.pairs[name] in wanted:
                values[self.pairs[name]] = step.executable.kept(name)


def _sole_reader(steps: list[Step], name: str, output: str) -> Step | None:
    """The one step that reads `name` and writes `output`, when no other step reads either."""
    readers = [s for s in steps if name in s.input_names or output in s.input_names]
    writes = readers[0].partition.outputs if len(readers) == 1 else ()
    return readers[0] if output in {s.name for s in writes} and name in readers[0].input_names else None
