"""Random models shaped like the architectures users bring, for `ragc profile` to time whole: ResNets (basic or
bottleneck blocks out to 2048 channels at 7x7), ConvNeXts (7x7 depthwise convs, channels-last LayerNorm and an
erf-GELU MLP) and decoder transformers (causal attention with RMSNorm, rotary embeddings and a SiLU-gated MLP, or
LayerNorm and a tanh-GELU MLP), each at a random size from seeds no evaluation uses.

profiler.modelgen's random CNNs mix small blocks at small widths; its encoders stop at 640 wide. The cost model
extrapolated from them to real exports (2026-12-03, H200, profile alone): resnet18 and resnet50 27 and 21 % short,
the transformers and convnext_tiny 16-45 % long. These models put samples where real networks run.
"""

from __future__ import annotations

import numpy as np
import onnx

from ragc.profiler.modelgen import Builder


def _choice(rng: np.random.Generator, options: list[int]) -> int:
    return int(rng.choice(options))


def random_resnet(seed: int) -> onnx.ModelProto:
    """A 7x7 stem and max pool, then four stages doubling the width (1 or 2 basic or bottleneck blocks each, the
    first striding by 2 after the first stage, a 1x1 projection where the shape changes), pooling, a classifier."""
    rng, b = np.random.default_rng(seed), Builder(seed)
    size, base, bottleneck = _choice(rng, [128, 160, 192, 224]), _choice(rng, [32, 48, 64]), bool(rng.random() < 0.5)
    x = b.conv("x", 3, base, 7, 2)
    x = b.one("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c = base
    for stage in range(4):
        width = base << stage
        out = 4 * width if bottleneck else width
        for block in range(_choice(rng, [1, 2])):
            stride = 2 if stage and not block else 1
            if bottleneck:
                y = b.conv(b.conv(b.conv(x, c, width), width, width, 3, stride), width, out, act="")
            else:
                y = b.conv(b.conv(x, c, width, 3, stride), width, width, 3, act="")
            shortcut = b.conv(x, c, out, 1, stride, act="") if stride != 1 or c != out else x
            x, c = b.one("Relu", [b.one("Add", [shortcut, y])]), out
    pooled = b.one("Flatten", [b.one("GlobalAveragePool", [x])])
    logits = b.one("Gemm", [pooled, b.weight((1000, c)), b.weight((1000,))], transB=1)
    return b.model(f"random_resnet_{seed}", "x", [1, 3, size, size], logits, [1, 1000])


def _channels_last_norm(b: Builder, x: str, c: int) -> str:
    """LayerNorm over the channels of an NCHW tensor, as torchvision's ConvNeXt exports it (two Transposes)."""
    y = b.one("Transpose", [x], perm=[0, 2, 3, 1])
    y = b.one("LayerNormalization", [y, b.weight((c,), 1.0), b.weight((c,))], axis=-1)
    return b.one("Transpose", [y], perm=[0, 3, 1, 2])


def _erf_gelu(b: Builder, x: str) -> str:
    erf = b.one("Erf", [b.one("Div", [x, b.scalar(2**0.5)])])
    return b.one("Mul", [b.one("Mul", [x, b.one("Add", [erf, b.scalar(1.0)])]), b.scalar(0.5)])


def random_convnext(seed: int) -> onnx.ModelProto:
    """A 4x4 stride-4 stem, then 3 or 4 stages (a channels-last norm and a 2x2 stride-2 conv between them) of 1 or
    2 blocks: 7x7 depthwise conv, channels-last LayerNorm, 4x MLP with erf-GELU, layer scale, residual."""
    rng, b = np.random.default_rng(seed), Builder(seed)
    size, c, stages = _choice(rng, [128, 160, 192, 224]), _choice(rng, [48, 64, 96]), _choice(rng, [3, 4])
    x = _channels_last_norm(b, b.conv("x", 3, c, 4, 4, act="", pad=0), c)
    for stage in range(stages):
        if stage:
            x = b.conv(_channels_last_norm(b, x, c), c, 2 * c, 2, 2, act="", pad=0)
            c *= 2
        for _ in range(_choice(rng, [1, 2])):
            y = b.one("Transpose", [b.conv(x, c, c, 7, 1, group=c, act="")], perm=[0, 2, 3, 1])
            y = b.one("LayerNormalization", [y, b.weight((c,), 1.0), b.weight((c,))], axis=-1)
            y = b.linear(_erf_gelu(b, b.linear(y, c, 4 * c)), 4 * c, c)
            y = b.one("Transpose", [b.one("Mul", [y, b.weight((c,), 1e-3)])], perm=[0, 3, 1, 2])
            x = b.one("Add", [x, y])
    pooled = b.one("Flatten", [b.one("GlobalAveragePool", [x])])
    pooled = b.one("LayerNormalization", [pooled, b.weight((c,), 1.0), b.weight((c,))], axis=-1)
    logits = b.one("Gemm", [pooled, b.weight((1000, c)), b.weight((1000,))], transB=1)
    return b.model(f"random_convnext_{seed}", "x", [1, 3, size, size], logits, [1, 1000])


class _Decoder:
    """Builds one random decoder (see random_decoder)."""

    def __init__(self, seed: int):
        rng = np.random.default_rng(seed)
        self.b, self.llama = Builder(seed), bool(rng.random() < 0.6)
        self.seq, self.dim = _choice(rng, [64, 96, 128, 192, 256]), _choice(rng, [256, 512, 768, 1024])
        self.heads, self.blocks = self.dim // 64, _choice(rng, [1, 2])
        self.hidden = 64 * round(self.dim * float(rng.choice([2.75, 4.0])) / 64)
        causal = np.triu(np.full((self.seq, self.seq), -1e9, np.float32), 1)
        angles = np.arange(self.seq)[:, None] * (1e4 ** (-np.arange(32) / 32))[None, :]
        angles = np.concatenate([angles, angles], axis=-1).astype(np.float32)
        self.mask = self.b.constant(causal[None, None])
        self.cos, self.sin = (
            (self.b.constant(f(angles)[None, None]) for f in (np.cos, np.sin)) if self.llama else ("", "")
        )

    def norm(self, x: str) -> str:
        """RMSNorm as HF's Llama exports it, or LayerNorm."""
        b, g = self.b, self.b.weight((self.dim,), 1.0)
        if not self.llama:
            return b.one("LayerNormalization", [x, g, b.weight((self.dim,))], axis=-1)
        mean = b.one("ReduceMean", [b.one("Pow", [x, b.scalar(2.0)])], axes=[-1], keepdims=1)
        recip = b.one("Reciprocal", [b.one("Sqrt", [b.one("Add", [mean, b.scalar(1e-6)])])])
        return b.one("Mul", [g, b.one("Mul", [x, recip])])

    def heads_of(self, t: str, rotary: bool) -> str:
        """[1, S, D] -> [1, H, S, 64], rotated as HF's rotate_half where `rotary`."""
        b = self.b
        t = b.one("Transpose", [b.one("Reshape", [t, b.ints([1, self.seq, self.heads, 64])])], perm=[0, 2, 1, 3])
        if not rotary:
            return t
        upper = b.one("Slice", [t, b.ints([32]), b.ints([64]), b.ints([-1])])
        lower = b.one("Slice", [t, b.ints([0]), b.ints([32]), b.ints([-1])])
        turned = b.one("Concat", [b.one("Neg", [upper]), lower], axis=-1)
        return b.one("Add", [b.one("Mul", [t, self.cos]), b.one("Mul", [turned, self.sin])])

    def attention(self, h: str) -> str:
        b, d = self.b, self.dim
        q, k, v = (
            self.heads_of(b.one("MatMul", [h, b.weight((d, d))]), rotary) for rotary in (self.llama,) * 2 + (False,)
        )
        scores = b.one("MatMul", [q, b.one("Transpose", [k], perm=[0, 1, 3, 2])])
        scores = b.one("Add", [b.one("Mul", [scores, b.scalar(0.125)]), self.mask])
        attn = b.one("MatMul", [b.one("Softmax", [scores], axis=-1), v])
        merged = b.one("Reshape", [b.one("Transpose", [attn], perm=[0, 2, 1, 3]), b.ints([1, self.seq, d])])
        return b.one("MatMul", [merged, b.weight((d, d))])

    def mlp(self, h: str) -> str:
        """SiLU-gated (Llama) or tanh-GELU (GPT-2)."""
        b, d, f = self.b, self.dim, self.hidden
        if self.llama:
            gate = b.one("MatMul", [h, b.weight((d, f))])
            act = b.one("Mul", [b.one("Mul", [gate, b.one("Sigmoid", [gate])]), b.one("MatMul", [h, b.weight((d, f))])])
            return b.one("MatMul", [act, b.weight((f, d))])
        up = b.linear(h, d, f)
        inner = b.one("Add", [up, b.one("Mul", [b.one("Pow", [up, b.scalar(3.0)]), b.scalar(0.044715)])])
        tanh = b.one("Tanh", [b.one("Mul", [inner, b.scalar((2 / np.pi) ** 0.5)])])
        act = b.one("Mul", [b.one("Mul", [up, b.scalar(0.5)]), b.one("Add", [tanh, b.scalar(1.0)])])
        return b.linear(act, f, d)

    def model(self, name: str) -> onnx.ModelProto:
        x = "x"
        for _ in range(self.blocks):
            x = self.b.one("Add", [x, self.attention(self.norm(x))])
            x = self.b.one("Add", [x, self.mlp(self.norm(x))])
        shape = [1, self.seq, self.dim]
        return self.b.model(name, "x", shape, self.norm(x), shape)


def random_decoder(seed: int) -> onnx.ModelProto:
    """1 or 2 causal decoder blocks, 256 to 1024 wide with 64-wide heads, sequence 64 to 256: Llama-style (RMSNorm,
    rotary Q and K, SiLU-gated MLP 2.75x or 4x wide) or GPT-2-style (LayerNorm, tanh-GELU MLP)."""
    return _Decoder(seed).model(f"random_decoder_{seed}")
