"""Test-wide set-up: the tests' helper modules on sys.path, and in CI (CI=true) the GPU toolchain required: a
missing Vulkan device or shader compiler fails the run instead of skipping every GPU test."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests import their model builders as `models`


def pytest_sessionstart(session):
    if os.environ.get("CI", "").lower() != "true":
        return
    if shutil.which("glslc") is None:
        pytest.exit("CI: glslc is not on PATH; the install step (make system-deps) is broken", returncode=1)
    from runtime_min.backends.vulkan import VulkanBackend
    from runtime_min.errors import BackendUnavailable

    try:
        VulkanBackend().close()
    except BackendUnavailable as exc:
        pytest.exit(f"CI: no Vulkan device ({exc}); the install step (make system-deps) is broken", returncode=1)
