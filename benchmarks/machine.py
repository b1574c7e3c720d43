"""What machine a benchmark ran on, printed with its figures (the CPU differs between
runs: an AVX-512 Intel one time, an AVX2 AMD the next)."""
from __future__ import annotations


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (what lscpu prints), or "unknown CPU"."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
