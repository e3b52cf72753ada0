"""The power counters selftest reads: RAPL energy_uj, amdgpu power1_average, NVML through nvidia-smi."""

from __future__ import annotations

import os
import stat

import pytest

from ragc.profiler import power


def _sysfs(tmp_path):
    rapl = tmp_path / "class" / "powercap" / "intel-rapl:0"
    rapl.mkdir(parents=True)
    (rapl / "name").write_text("package-0\n")
    (rapl / "energy_uj").write_text("1000000\n")
    gpu = tmp_path / "class" / "hwmon" / "hwmon3"
    gpu.mkdir(parents=True)
    (gpu / "name").write_text("amdgpu\n")
    (gpu / "power1_average").write_text("14000000\n")
    other = tmp_path / "class" / "hwmon" / "hwmon1"
    other.mkdir(parents=True)
    (other / "name").write_text("k10temp\n")
    return rapl, gpu


def test_counters_found_and_read(tmp_path):
    _sysfs(tmp_path)
    found = power.counters(tmp_path, nvidia_smi=None)
    assert [(c.name, c.kind, c.readable) for c in found] == [
        ("rapl package-0", "energy_uj", True),
        ("amdgpu hwmon3", "power_uw", True),
    ]
    assert power.read(found[0]) == 1_000_000.0
    assert power.energy_mj(1_000_000.0, 1_500_000.0, found[0], 2.0) == pytest.approx(500.0)
    assert power.energy_mj(14e6, 14e6, found[1], 0.5) == pytest.approx(7000.0)  # 14 W for 0.5 s


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a 0400 file anyway")
def test_root_only_rapl_is_reported_unreadable(tmp_path):
    rapl, _ = _sysfs(tmp_path)
    (rapl / "energy_uj").chmod(0)
    found = power.counters(tmp_path, nvidia_smi=None)
    assert not found[0].readable and "root only" in found[0].detail
    (rapl / "energy_uj").chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_this_machine_lists_what_it_has():
    assert all(isinstance(c.readable, bool) for c in power.counters())
