"""How many intra-op CPU threads torch should use: the cores this process may actually run on.

``os.cpu_count()`` counts the machine's cores, not those a container, a CPU affinity mask or
a cgroup quota leaves to the process; a process that starts one thread per machine core on
a 2-core quota, or beside another busy job, spends its time switching threads. The count is
decided in this order (the first that is set wins):

1. the config key ``NUM_THREADS`` when it is > 0;
2. the environment variable ``BASGG_NUM_THREADS`` (> 0);
3. an explicit ``OMP_NUM_THREADS`` (> 0), as torch itself would;
4. auto: ``min(CPU affinity, cgroup quota)``, rounded down, shared among the processes
   torchrun starts on this machine (``LOCAL_WORLD_SIZE``), at least 1.

Several jobs on one machine each see every core: set ``BASGG_NUM_THREADS`` (or
``NUM_THREADS``) so that the jobs' threads add up to the cores (docs/speed.md).

No torch import here except in :func:`apply_threads`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

ENV_VARIABLE = "BASGG_NUM_THREADS"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count()`` where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_quota(
    root: Path = CGROUP_ROOT, self_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, else v1 CFS quota), or None if
    unlimited or unknown. The tightest limit on the way from this process's cgroup up to the
    root counts."""
    limits = [_v2_limit(path) for path in _v2_paths(root, self_cgroup)]
    limits += [_v1_limit(path) for path in _v1_paths(root, self_cgroup)]
    known = [limit for limit in limits if limit is not None]
    return min(known) if known else None


def available_cpus(root: Path = CGROUP_ROOT, self_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """Whole CPUs this process can use: ``min(affinity, cgroup quota)``, at least 1."""
    count = float(affinity_cpus())
    quota = cgroup_cpu_quota(root, self_cgroup)
    if quota is not None:
        count = min(count, quota)
    return max(1, math.floor(count))


def thread_count(
    config_value: int = 0,
    environ: Mapping[str, str] | None = None,
    *,
    auto: int | None = None,
) -> tuple[int, str]:
    """``(threads, where the number came from)`` by the order in the module docstring.

    Args:
        config_value: the ``NUM_THREADS`` key; 0 means decide automatically.
        environ: the environment (default ``os.environ``).
        auto: the automatic count (default :func:`available_cpus`).
    """
    environ = os.environ if environ is None else environ
    if config_value < 0:
        raise ValueError(f"NUM_THREADS must be >= 0 (0 = automatic), got {config_value}")
    if config_value > 0:
        return config_value, "NUM_THREADS"
    for name in (ENV_VARIABLE, "OMP_NUM_THREADS"):
        text = environ.get(name, "").strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError as error:
            raise ValueError(
                f"environment variable {name}: expected an integer, got {text!r}"
            ) from error
        if value > 0:
            return value, name
    count = available_cpus() if auto is None else auto
    local_processes = int(environ.get("LOCAL_WORLD_SIZE", "1") or 1)  # torchrun
    if local_processes > 1:
        return max(1, count // local_processes), f"{AUTOMATIC} / {local_processes} processes"
    return count, f"{AUTOMATIC} (affinity and cgroup quota)"


AUTOMATIC = "available CPUs"  # how the sources of automatic counts begin


def is_automatic(source: str) -> bool:
    """Whether a :func:`thread_count` source is the automatic count (no key or variable)."""
    return source.startswith(AUTOMATIC)


def apply_threads(config_value: int = 0) -> tuple[int, str]:
    """Set torch's intra-op threads by :func:`thread_count`; returns the count and its source."""
    import torch

    count, source = thread_count(config_value)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count, source


def _own_cgroups(self_cgroup: Path) -> list[tuple[str, str]]:
    """``(controllers, path)`` lines of /proc/self/cgroup (empty when unreadable)."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            entries.append((parts[1], parts[2]))
    return entries


def _ancestors(base: Path, relative: str) -> list[Path]:
    """``base/relative`` and each parent folder up to ``base``."""
    folders = [base]
    current = base
    for part in [p for p in relative.split("/") if p]:
        current = current / part
        folders.append(current)
    return folders[::-1]


def _v2_paths(root: Path, self_cgroup: Path) -> list[Path]:
    unified = [path for controllers, path in _own_cgroups(self_cgroup) if controllers == ""]
    relative = unified[0] if unified else "/"
    return [folder / "cpu.max" for folder in _ancestors(root, relative)]


def _v1_paths(root: Path, self_cgroup: Path) -> list[Path]:
    relative = next(
        (
            path
            for controllers, path in _own_cgroups(self_cgroup)
            if "cpu" in controllers.split(",")
        ),
        "/",
    )
    paths = []
    for mount in ("cpu,cpuacct", "cpu"):
        base = root / mount
        if base.is_dir():
            paths += _ancestors(base, relative)
    return paths


def _v2_limit(path: Path) -> float | None:
    """``cpu.max`` is ``"<quota> <period>"`` or ``"max <period>"`` (unlimited)."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_limit(folder: Path) -> float | None:
    """``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; a quota of -1 is unlimited."""
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text().strip())
        period = int((folder / "cpu.cfs_period_us").read_text().strip())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
