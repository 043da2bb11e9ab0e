"""CPU time, memory and load readings of local processes, from /proc (Linux only)."""

import os
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """Return the user plus system CPU time of process pid so far, all threads included.

    Returns 0.0 when the process no longer exists.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) can contain spaces, so fields are counted after its ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    user_ticks, system_ticks = int(fields[11]), int(fields[12])
    return (user_ticks + system_ticks) / _CLOCK_TICKS


def memory_mb(pid: int) -> dict[str, float]:
    """Return the resident set size now (``rss``) and its peak (``peak_rss``) in MB.

    MB here is 10**6 bytes, the unit of the per-service memory target.

    Returns an empty dict when the process no longer exists.
    """
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    values: dict[str, float] = {}
    for line in lines:
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            kib = int(rest.split()[0])
            values["rss" if key == "VmRSS" else "peak_rss"] = round(kib * 1024 / 1e6, 1)
    return values


def load_average() -> tuple[float, float, float]:
    """Return the 1, 5 and 15 minute load averages of the machine."""
    one_minute, five_minutes, fifteen_minutes = os.getloadavg()
    return round(one_minute, 2), round(five_minutes, 2), round(fifteen_minutes, 2)


def machine_busy_seconds() -> float:
    """Return the CPU time all cores of the machine spent busy since boot.

    Busy is every /proc/stat state but idle and iowait, so the time that other
    programs used during a run is this value's change less the run's own processes.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(value) for value in fields]
    idle, iowait = ticks[3], ticks[4]
    # guest and guest_nice (fields 9 and 10) are already counted in user and nice.
    return (sum(ticks[:8]) - idle - iowait) / _CLOCK_TICKS


class CpuMeter:
    """CPU seconds each named process used between ``start()`` and ``stop()``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = dict(pids)
        self._started: dict[str, float] = {}

    def start(self) -> None:
        self._started = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def stop(self) -> dict[str, float]:
        return {
            name: round(cpu_seconds(pid) - self._started.get(name, 0.0), 3)
            for name, pid in self._pids.items()
        }
