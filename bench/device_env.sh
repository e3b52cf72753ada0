# Source at the start of every command on the lent GPU machine (run with carry [".gl", ".whl"]):
#   . bench/device_env.sh && python3 bench/gemm.py
# Unpacks the Vulkan loader and glslc brought in .gl/, installs the wheels from .whl/, points at the NVIDIA ICD.
# Setup of .gl/ and .whl/ on the workstation: see shared/DEVICE.md.
# Unpacks once per machine: a later command re-sourcing this must not overwrite glslc or the wheels while an
# earlier command's background job (bench/device_costmodel.sh) is running them.
if [ ! -f /tmp/site/.ragc-unpacked ]; then
  for f in .gl/lib/*.deb; do dpkg -x "$f" /; done
  ldconfig
  for f in .gl/glslc/*.deb; do dpkg -x "$f" /tmp/glslc; done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${RAGC_WHEELS:-.whl}"/*.whl
  touch /tmp/site/.ragc-unpacked
fi
export PATH=/tmp/glslc/usr/bin:$PATH LD_LIBRARY_PATH=/tmp/glslc/usr/lib/x86_64-linux-gnu
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
