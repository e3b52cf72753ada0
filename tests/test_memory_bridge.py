"""The memory bridge (zero-copy buffers between the CPU and the GPU) on lavapipe: same bits with it on and off, for
runs and streams; copies counted and removed; outputs handed out as views are never overwritten by later runs."""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path

import numpy as np
import pytest
from gpu_harness import Builder, backend, prepare
from onnx import TensorProto, helper
from test_npu_xrt import fake, plan  # noqa: F401  (fixtures: the pyxrt stand-in and an NPU partition on it)

import runtime_min
from codegen.gpu import emit
from ragc.pipeline import compile_model
from runtime_min.backends.npu_xrt import NpuXrtBackend
from runtime_min.backends.shared_memory import SHARED_ALIGN, empty_shared, is_shareable
from runtime_min.backends.vulkan import MAX_LEASED
from runtime_min.options import LoadOptions

TARGET = "ryzen-ai-9-hx-370"
SHAPE = (4, 257)
TINYNET = Path(__file__).resolve().parent.parent / "examples" / "tinynet.onnx"


def sandwich_model() -> bytes:
    """x -> Neg (cpu) -> Relu (gpu) -> Sigmoid (cpu) -> Tanh (gpu), every tensor a plan output (so no op fuses with
    its neighbour): the plan hands GPU outputs straight to the caller and CPU outputs feed the GPU."""
    ops = [("Neg", "x", "a"), ("Relu", "a", "r"), ("Sigmoid", "r", "s"), ("Tanh", "s", "t")]
    nodes = [helper.make_node(op, [i], [o], name=o) for op, i, o in ops]
    value = {n: helper.make_tensor_value_info(n, TensorProto.FLOAT, list(SHAPE)) for n in "xarst"}
    graph = helper.make_graph(nodes, "sandwich", [value["x"]], [value[n] for n in "arst"])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    backend({}).close()  # skips the module when no Vulkan device exists
    root = tmp_path_factory.mktemp("bridge")
    (root / "sandwich.onnx").write_bytes(sandwich_model())
    sandwich = root / "sandwich.onnx", root / "s", ["*=cpu", "Relu=gpu", "Tanh=gpu"]
    tinynet = TINYNET, root / "t", ["Conv=gpu"]
    return {
        name: compile_model(model, out, devices="cpu,gpu", target=TARGET, place=place).bundle
        for name, (model, out, place) in {"sandwich": sandwich, "tinynet": tinynet}.items()
    }


def feeds_for(loaded: runtime_min.Plan, seed: int, shared: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for spec in loaded.inputs:
        value = rng.standard_normal(spec.shape).astype(spec.dtype)
        out[spec.name] = value
        if shared:
            out[spec.name] = empty_shared(spec.shape, spec.dtype)
            out[spec.name][...] = value
    return out


def load(bundle: Path, zero_copy: bool) -> runtime_min.Plan:
    loaded = runtime_min.load(bundle, zero_copy=zero_copy)
    assert not loaded.fallbacks, loaded.fallbacks
    return loaded


def same_bits(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return sorted(a) == sorted(b) and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)


@pytest.mark.parametrize("model", ["sandwich", "tinynet"])
def test_runs_are_bit_identical_with_the_bridge_on_and_off(bundles, model):
    with load(bundles[model], False) as off, load(bundles[model], True) as on:
        for seed in range(4):
            want = off.run(feeds_for(off, seed))
            assert same_bits(on.run(feeds_for(on, seed)), want)
            assert same_bits(on.run(feeds_for(on, seed, shared=True)), want)  # imported host memory


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("model", ["sandwich", "tinynet"])
def test_streams_are_bit_identical_with_the_bridge_on_and_off(bundles, model, depth):
    with load(bundles[model], False) as off, load(bundles[model], True) as on:
        wants = [off.run(feeds_for(off, seed)) for seed in range(7)]
        frames = (feeds_for(on, seed, shared=seed % 2 == 1) for seed in range(7))
        got = list(on.stream(frames, depth=depth))  # every output held until the end
        assert all(same_bits(g, w) for g, w in zip(got, wants, strict=True))


def test_copy_counters_show_the_copies_removed(bundles):
    with load(bundles["sandwich"], False) as off, load(bundles["sandwich"], True) as on:
        for each in (off, on):
            for seed in range(3):
                each.run(feeds_for(each, seed))
        before, after = off.copy_stats(), on.copy_stats()
    # two GPU partitions of one input and one output each, 3 runs: staging makes 2 copies per tensor, the bridge 1
    tensor = int(np.prod(SHAPE)) * 4
    assert (before.runs, before.copies, before.avoided) == (6, 24, 0)
    assert before.bytes_copied == 24 * tensor
    assert (after.runs, after.copies, after.avoided) == (6, 12, 12)
    assert after.bytes_copied == after.bytes_avoided == 12 * tensor


def test_the_env_var_turns_the_bridge_off(monkeypatch):
    monkeypatch.setenv("RAGC_ZERO_COPY", "0")
    assert not LoadOptions.make({}).zero_copy
    assert LoadOptions.make({"zero_copy": True}).zero_copy
    monkeypatch.setenv("RAGC_ZERO_COPY", "1")
    assert LoadOptions.make({}).zero_copy and not LoadOptions.make({"zero_copy": False}).zero_copy


@pytest.fixture
def exe_factory():
    """Prepares relu(x) and sigmoid(relu(x)) as one GPU partition on a fresh backend; closes everything after."""
    made = []

    def make(zero_copy: bool = True):
        b = Builder()
        y = b.op("Relu", [b.input("x", SHAPE)], SHAPE)
        z = b.op("Sigmoid", [y], SHAPE)
        graph = b.graph([y, z])
        be = backend({"zero_copy": zero_copy})
        with tempfile.TemporaryDirectory() as tmp:
            exe = prepare(be, emit(graph, "p1"), graph, Path(tmp))
        made.append(be)
        return be, exe

    yield make
    for be in made:
        be.close()


def gpu_feeds(seed: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)}


def test_outputs_are_views_and_later_runs_never_overwrite_them(exe_factory):
    _, off = exe_factory(False)
    _, on = exe_factory(True)
    held = [on.run(gpu_feeds(seed)) for seed in range(3)]
    for out in held:
        assert all(v.base is not None and not v.flags.owndata for v in out.values())  # no host copy was made
    more = [on.run(gpu_feeds(seed)) for seed in range(3, 2 * MAX_LEASED)]  # past the leased-set limit: copies
    assert len(on.io_sets) == MAX_LEASED + 1
    for seed, out in enumerate(held + more):
        assert same_bits(out, off.run(gpu_feeds(seed)))


def test_a_set_is_reused_once_its_views_are_gone(exe_factory):
    _, exe = exe_factory(True)
    out = exe.run(gpu_feeds(0))
    first = exe.io_sets[1]
    relu = out["t0"][1:3]  # a derived view keeps the set busy after the dict is gone
    del out
    exe.run(gpu_feeds(1))
    assert not first.free()
    del relu
    gc.collect()
    assert first.free()
    exe.run(gpu_feeds(2))
    assert len(exe.io_sets) == 3  # the private set and two leased ones, the first reused


def test_views_outlive_the_backend(exe_factory):
    be, exe = exe_factory(True)
    out = exe.run(gpu_feeds(5))
    want = {k: v.copy() for k, v in out.items()}
    be.close()
    assert same_bits(out, want)  # memory freed only when `out` goes
    del out
    gc.collect()


def test_page_aligned_inputs_are_imported(exe_factory):
    _, exe = exe_factory(True)
    x = empty_shared(SHAPE)
    x[...] = gpu_feeds(7)["x"]
    plain = exe.run(gpu_feeds(7))
    imported = exe.run({"x": x})
    assert same_bits(plain, imported)
    if exe.arena_view is not None:  # device-local memory is host-visible here (lavapipe): inputs go straight in
        assert exe.imports is None and exe.copy_stats().avoided >= exe.copy_stats().runs
        return
    if exe.imports is None:
        pytest.skip("this Vulkan device lacks VK_EXT_external_memory_host")
    assert len(exe.imports._cache) == 1
    x[...] = gpu_feeds(8)["x"]  # the same memory, new contents: the cached import reads them
    assert same_bits(exe.run({"x": x}), exe.run(gpu_feeds(8)))


def test_bridge_off_copies_everything(exe_factory):
    _, exe = exe_factory(False)
    out = exe.run(gpu_feeds(0))
    assert all(v.base is None or v.base.flags.owndata for v in out.values())
    assert exe.arena_view is None and exe.imports is None and len(exe.io_sets) == 1
    stats = exe.copy_stats()
    assert (stats.runs, stats.copies, stats.avoided) == (1, 6, 0)


@pytest.mark.parametrize(("shape", "dtype"), [((3, 5), np.float32), (7, np.uint8), ((2, 4096), np.float16), (0, "f4")])
def test_empty_shared_is_page_aligned(shape, dtype):
    a = empty_shared(shape, dtype)
    assert a.shape == ((shape,) if isinstance(shape, int) else shape) and a.dtype == np.dtype(dtype)
    assert a.flags.c_contiguous and is_shareable(a) == (a.nbytes > 0)  # numpy puts empty arrays anywhere
    assert a.nbytes == 0 or a.ctypes.data % SHARED_ALIGN == 0
    assert not is_shareable(np.empty(SHARED_ALIGN + 8, np.uint8)[1:])
    with pytest.raises(ValueError, match="power of two"):
        empty_shared(4, align=3000)


def test_npu_xrt_counts_its_bo_copies(fake, plan):  # noqa: F811  (the imported fixtures)
    fake.configure(user_pointers=False)  # the copying path (user-pointer bos: tests/test_npu_xrt.py)
    partition, bundle, root = plan
    exe = NpuXrtBackend.open(LoadOptions(xclbin_path=(str(root),))).prepare(partition, bundle)
    setup = len(fake.CALLS)
    for seed in range(2):
        exe.run({"x": np.random.default_rng(seed).standard_normal((1, 3, 6, 6)).astype(np.float32)})
    calls = fake.CALLS[setup:]
    moved = [d["nbytes"] for n, d in calls if n == "bo.write"] + [d["size"] for n, d in calls if n == "bo.read"]
    stats = exe.copy_stats()
    assert (stats.runs, stats.copies, stats.bytes_copied, stats.avoided) == (2, len(moved), sum(moved), 0)
