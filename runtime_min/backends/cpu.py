"""The CPU backend: each partition is an ONNX model run by onnxruntime's CPU execution provider; its weights are
external data in the bundle's tensor store, which onnxruntime reads (and refuses to read outside the bundle)."""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime_min.backends.base import Backend, Executable
from runtime_min.errors import BackendUnavailable, BundleError
from runtime_min.manifest import Bundle, Partition
from runtime_min.options import LoadOptions


class CpuExecutable(Executable):
    def __init__(self, session: Any, partition: Partition) -> None:
        # onnxruntime's own binding, past InferenceSession.run's Python checks: the executor hands it exactly the
        # partition's checked inputs, so those checks would only cost time on every run
        self._run = getattr(getattr(session, "_sess", None), "run", None) or session.run
        self._session, self._in_place = session, partition.in_place
        self._outputs = [o.name for o in partition.outputs]
        self._moving = self._outputs  # outputs onnxruntime allocates (not written into a kept input)
        self._specs = {s.name: s for s in partition.inputs}
        self._kept: dict[str, np.ndarray] = {}  # kept input -> its array, which onnxruntime updates in place
        self._binding: Any = None

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._kept:
            return dict(zip(self._outputs, self._run(self._outputs, feeds, None), strict=False))  # GIL released
        for name, value in feeds.items():
            if name in self._kept:
                np.copyto(self._kept[name], value)
            else:
                self._binding.bind_cpu_input(name, value)
        self._session.run_with_iobinding(self._binding)
        values = self._binding.get_outputs()
        return {name: values[i].numpy() for i, name in enumerate(self._moving)}

    def keep(self, name: str, output: str) -> bool:
        """Where the compiler marked the pair in place (a ScatterND nothing else reads the input of), onnxruntime
        writes the output into the kept array itself (an I/O binding of both to one buffer): nothing copied."""
        if self._in_place.get(name) != output:
            return False
        spec = self._specs[name]
        self._kept[name] = array = np.zeros(spec.shape, spec.dtype)
        self._binding = self._binding or self._session.io_binding()
        self._binding.bind_cpu_input(name, array)
        self._binding.clear_binding_outputs()
        kept_outputs = {self._in_place[k]: a for k, a in self._kept.items()}
        self._moving = [o for o in self._outputs if o not in kept_outputs]
        for o in self._moving:
            self._binding.bind_output(o, "cpu")
        for o, a in kept_outputs.items():
            self._binding.bind_output(o, "cpu", 0, a.dtype, list(a.shape), a.ctypes.data)
        return True

    def kept(self, name: str) -> np.ndarray:
        return self._kept[name].copy()


class CpuBackend(Backend):
    device = "cpu"

    def __init__(self, ort: Any, options: LoadOptions) -> None:
        self._ort = ort
        self._options = options

    @classmethod
    def open(cls, options: LoadOptions) -> CpuBackend:
        try:
            import onnxruntime
        except ImportError:
            raise BackendUnavailable("onnxruntime is not installed; `pip install onnxruntime`") from None
        onnxruntime.set_default_logger_severity(3)
        return cls(onnxruntime, options)

    def prepare(self, partition: Partition, bundle: Bundle) -> CpuExecutable:
        where = f"partition {partition.id}"
        path = bundle.path(partition.artifact.main, where)
        opts = self._ort.SessionOptions()
        opts.intra_op_num_threads = self._options.cpu_threads
        opts.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self._options.cpu_spinning else "0")
        try:
            session = self._ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad models and external data
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BundleError(
                f"{where}: onnxruntime refuses {partition.artifact.main} ({first[:200]}); recompile the model"
            ) from None
        _check_signature(session, partition, where)
        return CpuExecutable(session, partition)

    def describe(self) -> str:
        return f"cpu (onnxruntime {self._ort.__version__})"


ORT_TYPES = {"float": "float32", "double": "float64", "float16": "float16", "string": "object"}


def _check_signature(session: Any, partition: Partition, where: str) -> None:
    """The ONNX file's inputs and outputs are the ones the schedule says: names, dtypes and static shapes."""
    for declared, actual in ((partition.inputs, session.get_inputs()), (partition.outputs, session.get_outputs())):
        have = {a.name: (_dtype(a.type), a.shape) for a in actual}
        for spec in declared:
            dtype, shape = have.get(spec.name, (None, None))
            if dtype != spec.dtype or not isinstance(shape, list) or tuple(shape) != spec.shape:
                raise BundleError(
                    f"{where}: its ONNX model's {spec.name!r} differs from schedule.json; recompile the model"
                )
    if len(partition.inputs) != len(session.get_inputs()):
        raise BundleError(f"{where}: its ONNX model takes other inputs than schedule.json says; recompile the model")


def _dtype(ort_type: str) -> str:
    """onnxruntime's "tensor(float)" -> "float32"."""
    inner = ort_type.removeprefix("tensor(").removesuffix(")")
    return ORT_TYPES.get(inner, inner)
