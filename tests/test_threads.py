"""Thread count detection: affinity, cgroup v2 / v1 quotas (fake files) and the overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from basgg import threads
from basgg.threads import available_cpus, cgroup_cpu_quota, thread_count


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_and_unlimited(tmp_path: Path) -> None:
    self_cgroup = tmp_path / "proc_self_cgroup"
    _write(self_cgroup, "0::/job\n")
    _write(tmp_path / "cg" / "cpu.max", "max 100000\n")
    _write(tmp_path / "cg" / "job" / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", self_cgroup) == 1.5
    _write(tmp_path / "cg" / "job" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", self_cgroup) is None


def test_cgroup_v2_parent_limit_is_the_tightest(tmp_path: Path) -> None:
    self_cgroup = tmp_path / "proc_self_cgroup"
    _write(self_cgroup, "0::/a/b\n")
    _write(tmp_path / "cg" / "a" / "cpu.max", "100000 100000\n")
    _write(tmp_path / "cg" / "a" / "b" / "cpu.max", "400000 100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", self_cgroup) == 1.0


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    self_cgroup = tmp_path / "proc_self_cgroup"
    _write(self_cgroup, "4:cpu,cpuacct:/\n1:memory:/\n")
    folder = tmp_path / "cg" / "cpu,cpuacct"
    _write(folder / "cpu.cfs_quota_us", "250000\n")
    _write(folder / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path / "cg", self_cgroup) == 2.5
    _write(folder / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(tmp_path / "cg", self_cgroup) is None


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path / "none", tmp_path / "missing") is None


def test_available_cpus_takes_the_smaller_and_rounds_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    self_cgroup = tmp_path / "proc_self_cgroup"
    _write(self_cgroup, "0::/\n")
    _write(tmp_path / "cg" / "cpu.max", "350000 100000\n")  # 3.5 CPUs
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 8)
    assert available_cpus(tmp_path / "cg", self_cgroup) == 3
    monkeypatch.setattr(threads, "affinity_cpus", lambda: 2)
    assert available_cpus(tmp_path / "cg", self_cgroup) == 2
    _write(tmp_path / "cg" / "cpu.max", "50000 100000\n")  # half a CPU still gets one thread
    assert available_cpus(tmp_path / "cg", self_cgroup) == 1


def test_override_order() -> None:
    both = {"BASGG_NUM_THREADS": "3", "OMP_NUM_THREADS": "5"}
    assert thread_count(2, both, auto=8) == (2, "NUM_THREADS")
    assert thread_count(0, both, auto=8) == (3, "BASGG_NUM_THREADS")
    assert thread_count(0, {"OMP_NUM_THREADS": "5"}, auto=8) == (5, "OMP_NUM_THREADS")
    assert thread_count(0, {"BASGG_NUM_THREADS": "0"}, auto=8)[0] == 8  # 0 = automatic
    assert thread_count(0, {}, auto=8)[0] == 8
    assert thread_count(0, {"LOCAL_WORLD_SIZE": "4"}, auto=8)[0] == 2  # torchrun shares
    assert thread_count(0, {"LOCAL_WORLD_SIZE": "4"}, auto=2)[0] == 1
    with pytest.raises(ValueError, match="BASGG_NUM_THREADS: expected an integer, got 'two'"):
        thread_count(0, {"BASGG_NUM_THREADS": "two"}, auto=8)
    with pytest.raises(ValueError, match="NUM_THREADS must be >= 0"):
        thread_count(-1, {}, auto=8)


def test_apply_threads_sets_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    monkeypatch.setenv("BASGG_NUM_THREADS", "1")
    try:
        assert threads.apply_threads(0) == (1, "BASGG_NUM_THREADS")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
