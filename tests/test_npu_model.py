"""The XDNA timing model: built from the target file's architecture figures, its GEMM tiling under the L1 budget,
vector kernels bound by streams and DDR, launches as XRT makes them, and its refusal of malformed figures.
Times are simulated (deterministic), so they are asserted exactly where the model defines them."""

from __future__ import annotations

import pytest

from ragc.costmodel.npu import ARRAY_KEYS, LAUNCH_KEYS, NPU_KEYS, XdnaTiming
from ragc.costmodel.npu_tiling import STACK_BYTES, gemm_seconds
from ragc.errors import PersonalityError
from ragc.targets import load_target

HX = load_target("ryzen-ai-9-hx-370")["npu"]
PHOENIX = load_target("ryzen-7-7840u")["npu"]


def _gemm_ms(t: XdnaTiming, m: int, k: int, n: int, dtype: str = "bf16", out: str = "bfloat16") -> float:
    tiling, padded = t.gemm_plan((m, k, n), dtype, out)
    ref = {"kernel": "matmul", "dims": dict(zip("MKN", padded, strict=True)), "dtype": dtype, "out_dtype": out}
    return t.kernel_ms({**ref, "tiling": tiling.__dict__})


def _tops(t: XdnaTiming, size: int, dtype: str = "bf16", out: str = "bfloat16") -> float:
    return 2 * size**3 / (_gemm_ms(t, size, size, size, dtype, out) * 1e-3) / 1e12


def test_gemm_time_grows_with_size_and_never_beats_the_peak():
    for section in (HX, PHOENIX):
        t = XdnaTiming.from_params(section)
        times = [_gemm_ms(t, s, s, s) for s in (64, 256, 1024, 4096)]
        assert times == sorted(times) and times[0] < times[-1]
        for dtype, out in (("bf16", "bfloat16"), ("int8", "int8"), ("int8", "int32")):
            peak = 2 * t.array.peak_macs_per_s(dtype) / 1e12
            assert 0.2 * peak < _tops(t, 4096, dtype, out) < peak


def test_the_bigger_array_is_faster_and_int8_outruns_bf16():
    hx, phoenix = XdnaTiming.from_params(HX), XdnaTiming.from_params(PHOENIX)
    assert _tops(hx, 2048) > 2 * _tops(phoenix, 2048)
    assert _tops(hx, 4096, "int8", "int8") > 2 * _tops(hx, 4096)


def test_every_tiling_fits_l1_and_pads_to_its_multiples():
    t = XdnaTiming.from_params(HX)
    for sizes in ((128, 768, 768), (2048, 2048, 8192), (49, 2048, 512), (3136, 576, 64)):
        tiling, padded = t.gemm_plan(sizes, "bf16", "bfloat16")
        need = 2 * (tiling.m * tiling.k + tiling.k * tiling.n) * 2 + tiling.c_depth * tiling.m * tiling.n * 2
        assert need <= t.array.l1_bytes - STACK_BYTES
        assert all(p >= s and p % q == 0 for p, s, q in zip(padded, sizes, tiling.multiples, strict=True))


def test_a_loaded_tiling_is_kept_unless_a_switch_pays():
    t = XdnaTiming.from_params(HX)
    small, _ = t.gemm_plan((64, 64, 64), "bf16", "bfloat16")
    kept, _ = t.gemm_plan((128, 128, 128), "bf16", "bfloat16", loaded=small)
    assert kept == small  # microseconds of difference never pay 0.68 ms
    big, _ = t.gemm_plan((4096, 4096, 4096), "bf16", "bfloat16", loaded=small)
    assert big != small


def test_ddr_bound_gemm_follows_the_ddr_figure():
    t = XdnaTiming.from_params(HX)
    slow = XdnaTiming.from_params({**HX, "ddr_gbps": HX["ddr_gbps"] / 4})
    tiling, padded = t.gemm_plan((4096, 4096, 4096), "bf16", "bfloat16")
    fast_s = gemm_seconds(t.array, tiling, *padded, "bf16", 2)
    slow_s = gemm_seconds(slow.array, tiling, *padded, "bf16", 2)
    assert slow_s > 2 * fast_s


def test_vector_kernels_are_bound_by_ddr():
    t = XdnaTiming.from_params(HX)
    elements = 1 << 22
    relu = t.kernel_ms({"kernel": "relu", "dims": {"L": elements}})
    assert relu == pytest.approx(elements * 2 * 2 / (HX["ddr_gbps"] * 1e9) * 1e3)
    assert t.kernel_ms({"kernel": "add", "dims": {"L": elements}}) == pytest.approx(1.5 * relu)


def test_causal_attention_costs_about_half():
    t = XdnaTiming.from_params(HX)
    dims = {"B": 1, "H": 32, "HKV": 8, "SQ": 2048, "SKV": 2048, "D": 64}
    full = t.kernel_ms({"kernel": "attention", "dims": dims})
    causal = t.kernel_ms({"kernel": "attention", "dims": dims, "causal": True})
    assert 0.45 * full < causal < 0.6 * full


def test_segments_pay_a_sync_each_and_a_switch_only_when_the_xclbin_changes():
    t = XdnaTiming.from_params(HX)
    costs = t.launch_costs
    one = t.segments(["a", "a", "a"])
    assert [(s["first"], s["last"], s["context_switch_ms"]) for s in one] == [(0, 2, 0.0)]
    two = t.segments(["a", "a", "b", "a"])
    assert [(s["first"], s["last"]) for s in two] == [(0, 1), (2, 2), (3, 3)]
    assert all(
        s["context_switch_ms"] == costs.context_switch_ms and s["host_sync_ms"] == costs.host_sync_ms for s in two
    )
    assert t.switch_ms() == costs.context_switch_ms + costs.host_sync_ms


def test_default_model_is_the_hx_370_target():
    assert XdnaTiming.from_params().describe() == XdnaTiming.from_params(HX).describe()
    assert XdnaTiming.from_params(HX).describe()["peak_tops"] == {"bf16": 29.49, "int8": 58.98}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"arch": "tpu"}, "arch"),
        ({"clock_ghz": -1}, "clock_ghz"),
        ({"columns": 0}, "columns"),
        ({"macs_per_cycle": {"bf16": 256}}, "int8"),
        ({"host_sync_ms": "fast"}, "malformed|host_sync_ms"),
    ],
)
def test_bad_parameters_are_refused(change, message):
    with pytest.raises(PersonalityError, match=message):
        XdnaTiming.from_params({**HX, **change})
    missing = {k: v for k, v in HX.items() if k != "ddr_gbps"}
    with pytest.raises(PersonalityError, match="ddr_gbps"):
        XdnaTiming.from_params(missing)
    with pytest.raises(ValueError, match="no timing model"):
        XdnaTiming.from_params(HX).kernel_ms({"kernel": "fft", "dims": {}})
    assert ARRAY_KEYS + LAUNCH_KEYS == NPU_KEYS  # ragc.targets lists the model's figures, in field order
