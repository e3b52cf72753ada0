"""Does a one-op GPU timing depend on how warm the GPU is? The profiler's one-op samples on the H200 ran GEMMs at
2.5-8 TFLOP/s where the same shapes inside whole transformers ran at 8-11, and the quick profile's predictions of
whole models came out 1.3-5.4x their measured times. This times one-op graphs three ways, GPU timestamps each:

- `after idle`: 50 ms of nothing (what a CPU probe between profiling blocks leaves), then one run;
- `profiler`: the profiler's own block (one warm-up run, then back-to-back runs; median);
- `hot`: after 0.5 s of the same graph back to back, then back-to-back runs (median);

and the SM clock (nvidia-smi, where present) after idling and while hot. Run on the lent GPU machine:

    bash -c '. bench/device_env.sh && python3 bench/gpu_warmth.py'
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ragc.profiler import specs  # noqa: E402
from ragc.profiler.gpu_bench import GpuGraphTimer, prepare_gpu  # noqa: E402
from ragc.profiler.oneop import random_feeds  # noqa: E402
from runtime_min.backends.vulkan import VulkanBackend  # noqa: E402
from runtime_min.options import LoadOptions  # noqa: E402

GRAPHS = {
    "gemm 1x9216x4096": specs.gemm(1, 9216, 4096),
    "gemm 128x768x3072": specs.gemm(128, 768, 3072),
    "projection 128x1024->4096": specs.matmul((128, 1024), (1024, 4096)),
    "conv 256x13->384 k3": specs.conv(256, 13, 384, 3),
}


def sm_clock() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=clocks.sm", "--format=csv,noheader"], capture_output=True, text=True
        )
        return out.stdout.strip() or "?"
    except OSError:
        return "no nvidia-smi"


def kernel_ms(exe, feeds) -> float:
    exe.run(feeds)
    return sum(t.duration_ns for t in exe.timings()) / 1e6


def main() -> None:
    backend = VulkanBackend(LoadOptions.make({"timestamps": True}))
    print(backend.device_name)
    print("| graph | after idle ms | profiler ms | hot ms | idle / hot | SM clock idle | SM clock hot |")
    print("|---|---:|---:|---:|---:|---|---|")
    for label, graph in GRAPHS.items():
        exe = prepare_gpu(backend, graph)
        feeds = random_feeds(graph)
        idle = []
        for _ in range(5):
            time.sleep(0.05)
            idle.append(kernel_ms(exe, feeds))
        clock_idle = sm_clock()
        timer = GpuGraphTimer(exe, graph, label)
        timer.block(0.2)
        profiler = sum(timer.blocks[-1][1].values())
        end = time.perf_counter() + 0.5
        while time.perf_counter() < end:
            exe.run(feeds)
        hot = statistics.median(kernel_ms(exe, feeds) for _ in range(20))
        clock_hot = sm_clock()
        row = [label, statistics.median(idle), profiler, hot, statistics.median(idle) / hot]
        cells = [row[0], *(f"{v:.4f}" for v in row[1:4]), f"{row[4]:.2f}", clock_idle, clock_hot]
        print("| " + " | ".join(cells) + " |")
        exe.close()
    backend.close()


if __name__ == "__main__":
    main()
