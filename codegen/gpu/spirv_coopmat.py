"""SPV_NV_cooperative_matrix -> SPV_KHR_cooperative_matrix, on the SPIR-V words.

glslc 2023.2 (glslang 11.13, what Debian 12 and the lent H200 machine have) knows GL_NV_cooperative_matrix but not
GL_KHR_cooperative_matrix. The two SPIR-V extensions differ in little: the KHR matrix type names its use (A, B or
accumulator), loads and stores take a MemoryLayout constant instead of a ColumnMajor bool and put it before the
stride, and the opcodes and capability are renumbered. The use of each matrix type is read from the MulAdds (its
operand position), so a kernel must give its A, B and accumulator matrices distinct types (coopmat_gemm.comp.j2
multiplies 16x16 by 16x8 into fp32 16x8 for that reason).
"""

from __future__ import annotations

import numpy as np

from codegen.errors import ShaderError

NV_CAPABILITY, KHR_CAPABILITY = 5357, 6022
NV_TYPE, NV_LOAD, NV_STORE, NV_MULADD, NV_LENGTH = 5358, 5359, 5360, 5361, 5362
KHR = {NV_TYPE: 4456, NV_LOAD: 4457, NV_STORE: 4458, NV_MULADD: 4459, NV_LENGTH: 4460}
OP_CAPABILITY, OP_EXTENSION, OP_TYPE_INT, OP_CONSTANT, OP_TRUE, OP_FALSE = 17, 10, 21, 43, 41, 42
NOT_TYPED = {5, 6, 71, 72}  # OpName, OpMemberName, OpDecorate, OpMemberDecorate: word 1 is a target, not a type


def _string(text: str) -> list[int]:
    data = text.encode() + b"\0" * (4 - len(text) % 4)
    return [int(w) for w in np.frombuffer(data, "<u4")]


def _instructions(words: list[int]) -> list[list[int]]:
    out, i = [], 5
    while i < len(words):
        count = words[i] >> 16
        if count == 0 or i + count > len(words):
            raise ShaderError("truncated SPIR-V in the cooperative-matrix rewrite; check glslc")
        out.append(words[i : i + count])
        i += count
    return out


def _uses(code: list[list[int]], types: set[int]) -> dict[int, int]:
    """Matrix type id -> its KHR use (0 A, 1 B, 2 accumulator), from the MulAdd operand positions."""
    type_of = {ins[2]: ins[1] for ins in code if ins[0] & 0xFFFF not in NOT_TYPED and len(ins) > 2 and ins[1] in types}
    uses: dict[int, int] = {}
    for ins in code:
        if ins[0] & 0xFFFF == NV_MULADD:
            for use, value in enumerate(ins[3:6]):
                if uses.setdefault(type_of[value], use) != use:
                    raise ShaderError("a cooperative matrix type is used as two of A, B, C; give each its own shape")
    return uses


def nv_to_khr(spirv: bytes) -> bytes:
    """The module with every NV cooperative-matrix instruction in its KHR form."""
    words = [int(w) for w in np.frombuffer(spirv, "<u4")]
    code = _instructions(words)
    bound = words[3]
    types = {ins[1] for ins in code if ins[0] & 0xFFFF == NV_TYPE}
    uses = _uses(code, types)
    bools = {ins[2]: ins[0] & 0xFFFF == OP_TRUE for ins in code if ins[0] & 0xFFFF in (OP_TRUE, OP_FALSE)}
    uint = next((ins[1] for ins in code if ins[0] & 0xFFFF == OP_TYPE_INT and ins[2:] == [32, 0]), None)
    if uint is None:
        raise ShaderError("a cooperative-matrix kernel without a 32-bit uint type; the rewrite needs one")
    consts = {v: bound + v for v in range(3)}
    out: list[list[int]] = []
    for ins in code:
        op, n = ins[0] & 0xFFFF, len(ins)
        if op == OP_CAPABILITY and ins[1] == NV_CAPABILITY:
            ins = [ins[0], KHR_CAPABILITY]
        elif op == OP_EXTENSION and ins[1:] == _string("SPV_NV_cooperative_matrix"):
            ins = [0, *_string("SPV_KHR_cooperative_matrix")]
        elif op == NV_TYPE:
            ins = [0, *ins[1:6], consts[uses.get(ins[1], 2)]]
        elif op == NV_LOAD:  # result type, result, pointer, stride, column major, [memory access]
            ins = [0, *ins[1:4], consts[int(bools[ins[5]])], ins[4], *ins[6:]]
        elif op == NV_STORE:  # pointer, object, stride, column major, [memory access]
            ins = [0, *ins[1:3], consts[int(bools[ins[4]])], ins[3], *ins[5:]]
        elif op in (NV_MULADD, NV_LENGTH):
            ins = [0, *ins[1:]]
        if ins[0] == 0 or n != len(ins):
            ins[0] = (len(ins) << 16) | KHR.get(op, op)
        out.append(ins)
        if op == OP_TYPE_INT and ins[1] == uint:
            out += [[(4 << 16) | OP_CONSTANT, uint, consts[v], v] for v in range(3)]
    header = [*words[:3], bound + 3, words[4]]
    return np.array(header + [w for ins in out for w in ins], "<u4").tobytes()
