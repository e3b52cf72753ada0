"""GLSL compute shaders: render a jinja2 template from `templates/`, compile it to SPIR-V with glslc, cache by hash."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from codegen.errors import ShaderError
from codegen.gpu.spirv_coopmat import nv_to_khr

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "templates"
SPIRV_MAGIC = b"\x03\x02\x23\x07"  # 0x07230203, little endian
GLSLC_FLAGS = ("--target-env=vulkan1.1", "-O")


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render(template: str, params: dict[str, Any]) -> str:
    """GLSL source of `templates/<template>` rendered with `params` (a missing parameter is an error)."""
    try:
        return _environment().get_template(template).render(**params)
    except jinja2.TemplateNotFound as exc:
        raise ShaderError(f"template {template!r} not found in {TEMPLATE_DIR}; add it or fix the name") from exc
    except jinja2.UndefinedError as exc:
        raise ShaderError(f"template {template!r}: {exc}; pass that parameter in the Dispatch params") from exc


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragc" / "spirv"


def _glslc() -> str:
    path = shutil.which("glslc")
    if path is None:
        raise ShaderError("glslc not found on PATH; install it (apt-get install glslc) or add it to PATH")
    return path


def compile_glsl(source: str, name: str = "kernel") -> bytes:
    """SPIR-V bytes of a GLSL compute shader; results are cached on disk under `cache_dir()` by source hash."""
    key = hashlib.sha256("\0".join((*GLSLC_FLAGS, source)).encode()).hexdigest()
    cached = cache_dir() / f"{key}.spv"
    if cached.is_file():
        spirv = cached.read_bytes()
        if spirv[:4] == SPIRV_MAGIC:
            return spirv
    with tempfile.TemporaryDirectory(prefix="ragc-glsl-") as tmp:
        src, out = Path(tmp) / f"{name}.comp", Path(tmp) / f"{name}.spv"
        src.write_text(source)
        proc = subprocess.run([_glslc(), *GLSLC_FLAGS, str(src), "-o", str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            first = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}, no message"])[0]
            raise ShaderError(f"glslc failed on {name}: {first}; fix the template or its params")
        spirv = out.read_bytes()
    if spirv[:4] != SPIRV_MAGIC or len(spirv) % 4:
        raise ShaderError(f"glslc produced invalid SPIR-V for {name}; check the glslc installation")
    _store(cached, spirv)
    return spirv


def _store(path: Path, data: bytes) -> None:
    """Write atomically so concurrent compilers never read half a file; an unwritable cache is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def build(template: str, params: dict[str, Any]) -> bytes:
    """Render then compile: the SPIR-V of one specialised kernel (NV cooperative matrices turned into KHR ones)."""
    source = render(template, params)
    spirv = compile_glsl(source, name=template.removesuffix(".comp.j2"))
    return nv_to_khr(spirv) if "GL_NV_cooperative_matrix" in source else spirv
