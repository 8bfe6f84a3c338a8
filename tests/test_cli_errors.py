"""File system errors reach a user as one line naming the path and the cause (exit 2), never
as a traceback unless ``--debug``. A read-only and a full file system are real tmpfs mounts
where the test may mount (root on Linux); the tests that need them are skipped elsewhere."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest
from test_eval_cli import TEST, TRAIN, VOCABULARY, predcls_prediction, write

from basgg import atomic
from basgg.cli import error_message, main
from basgg.data.vg150_format import VG150Files, write_vg150


def _mount(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("mount is not available")
    if result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no permission)")


@pytest.fixture
def read_only_folder(tmp_path: Path):
    target = tmp_path / "ro"
    _mount(target, "size=64k,ro")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


@pytest.fixture
def full_folder(tmp_path: Path):
    """A 64 KiB tmpfs whose blocks are all taken, with an empty folder ``report`` in it."""
    target = tmp_path / "full"
    _mount(target, "size=64k")
    try:
        (target / "report").mkdir()
        with open(target / "filler", "wb", buffering=0) as stream:
            with pytest.raises(OSError) as filled:
                while True:
                    stream.write(b"\0" * 4096)
        assert filled.value.errno == errno.ENOSPC
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


def _error(code: int, capsys: pytest.CaptureFixture) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_output_dir_under_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("x")
    line = _error(main(["train", "OUTPUT_DIR", str(tmp_path / "file" / "run")]), capsys)
    run = tmp_path / "file" / "run"
    assert line == f"basgg train: error: {run}: not a directory (a file is in the way)"


def test_output_dir_equal_to_a_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("x")
    line = _error(main(["test", "OUTPUT_DIR", str(tmp_path / "file")]), capsys)
    assert (
        line == f"basgg test: error: {tmp_path / 'file'}: already exists (and is not a directory)"
    )


def test_output_dir_on_a_read_only_file_system(
    read_only_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    run = read_only_folder / "run"
    line = _error(main(["train", "OUTPUT_DIR", str(run)]), capsys)
    assert line == f"basgg train: error: {run}: read-only file system"


def _dataset_and_predictions(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "vg150"
    write_vg150(VG150Files(root), TRAIN + TEST, [0, 0, 2, 2], VOCABULARY)
    return root, write(tmp_path / "p.h5", [predcls_prediction(gt) for gt in TEST])


def test_a_report_on_a_full_disk_names_the_file(
    tmp_path: Path, full_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    data, predictions = _dataset_and_predictions(tmp_path)
    out = full_folder / "report"
    code = main(
        ["eval", str(predictions), "--data", str(data), "--val-size", "0", "--out", str(out)]
    )
    line = _error(code, capsys)
    assert line == f"basgg eval: error: {out / 'metrics.json'}: no space left on device"
    assert list(out.iterdir()) == []  # no half-written file, no temporary left


def test_permission_denied_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Root ignores permission bits: the refusal is simulated at the write call."""
    data, predictions = _dataset_and_predictions(tmp_path)
    out = tmp_path / "report"

    def refuse(path: Path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(Path, "write_text", refuse)
    code = main(
        ["eval", str(predictions), "--data", str(data), "--val-size", "0", "--out", str(out)]
    )
    line = _error(code, capsys)
    assert line == f"basgg eval: error: {out / 'metrics.json'}: permission denied"
    assert not [p for p in out.iterdir() if p.name.startswith(atomic.TEMPORARY_PREFIX)]


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        main(["--debug", "test", "OUTPUT_DIR", str(tmp_path / "file")])
    with pytest.raises(FileExistsError):
        main(["test", "--debug", "OUTPUT_DIR", str(tmp_path / "file")])


def test_an_unexpected_error_is_one_line_with_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import basgg.commands.evaluate as evaluate

    def broken(args):
        raise RuntimeError("something unforeseen\nwith a second line")

    monkeypatch.setattr(evaluate, "run", broken)
    assert main(["eval", "p.h5", "--data", "d"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "basgg eval: error: RuntimeError: something unforeseen (run with --debug for the traceback)"
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.ENOSPC, "No space", "/d/x.h5"), "/d/x.h5: no space left on device"),
        (OSError(errno.EROFS, "Read-only", "/d"), "/d: read-only file system"),
        (
            NotADirectoryError(errno.ENOTDIR, "No", "/f"),
            "/f: not a directory (a file is in the way)",
        ),
        (PermissionError(errno.EACCES, "Denied", "/root/x"), "/root/x: permission denied"),
        (FileNotFoundError("x.h5: predictions file not found"), "x.h5: predictions file not found"),
        (KeyError("no such split"), "no such split"),
    ],
)  # fmt: skip
def test_error_message(error: BaseException, expected: str) -> None:
    assert error_message(error) == expected


def test_output_dir_on_a_full_disk(full_folder: Path, capsys: pytest.CaptureFixture) -> None:
    run = full_folder / "run"
    line = _error(main(["train", "OUTPUT_DIR", str(run)]), capsys)
    assert line.startswith(f"basgg train: error: {run}")
    assert line.endswith(": no space left on device")


def _console(*words: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m basgg WORDS``: the console script's way out (:func:`basgg.cli.run`)."""
    import os
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-m", "basgg", *words],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_console_script_keeps_exit_codes_and_flushes_its_output(tmp_path: Path) -> None:
    """The quick exit (no interpreter teardown) still returns main's status and prints
    everything: argparse's own exits, a bad input (2), a full report on stdout."""
    version = _console("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("basgg ")
    assert _console("no-such-command", cwd=tmp_path).returncode == 2
    missing = _console("eval", "missing.h5", "--data", str(tmp_path), cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "basgg eval: error: missing.h5: predictions file not found"
    ]
    files = VG150Files(root=tmp_path / "data")
    write_vg150(files, TRAIN + TEST, [0, 0, 2, 2], VOCABULARY)
    stats = _console("data", "stats", str(files.root), cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert stats.stdout.rstrip().endswith("object_histogram.png")  # the last line made it out
