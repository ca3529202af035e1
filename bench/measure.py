"""Small measuring helpers the benchmarks share: a process's memory, percentiles."""

from __future__ import annotations


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS) in MB, read from /proc; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return 0.0
    return 0.0


def percentile(values: list[float], q: float) -> float:
    """The value below which a share `q` of the values lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)]
