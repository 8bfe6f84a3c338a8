"""Training logs: ``train_log.csv`` and ``val_log.csv`` (plus TensorBoard when installed).

A resumed run first drops the rows past the iteration it resumes from, so the files read as
one uninterrupted run.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from basgg.atomic import atomic_output

TRAIN_LOG = "train_log.csv"
VAL_LOG = "val_log.csv"
TRAIN_COLUMNS = ("iteration", "lr", "loss", "loss_relation", "loss_object", "loss_tree", "seconds")


class TrainingLog:
    """Append-only CSV logs in ``output_dir``, truncated to ``resume_iteration`` on open.

    Args:
        output_dir: the run's folder.
        resume_iteration: rows with a larger iteration are dropped (0 for a fresh run).
        tensorboard: also write TensorBoard scalars when ``torch.utils.tensorboard`` works.
        train_columns: the columns of ``train_log.csv`` (the detector logs other losses).
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        resume_iteration: int = 0,
        tensorboard: bool = True,
        train_columns: Sequence[str] = TRAIN_COLUMNS,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.train_columns = tuple(train_columns)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.train_path = self.output_dir / TRAIN_LOG
        self.val_path = self.output_dir / VAL_LOG
        for path in (self.train_path, self.val_path):
            _truncate(path, resume_iteration)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None  # noqa: N806
            if SummaryWriter is not None:
                self.writer = SummaryWriter(str(self.output_dir / "tensorboard"))

    def training(self, iteration: int, lr: float, losses: dict[str, float], seconds: float) -> None:
        """One row of mean losses over the last logging window."""
        row = {"iteration": iteration, "lr": f"{lr:.6g}", "seconds": f"{seconds:.2f}"}
        row.update({name: f"{value:.6f}" for name, value in losses.items()})
        _append(self.train_path, self.train_columns, row)
        if self.writer is not None:
            self.writer.add_scalar("lr", lr, iteration)
            for name, value in losses.items():
                self.writer.add_scalar(f"train/{name}", value, iteration)

    def validation(self, iteration: int, metrics: dict[str, float], *, best: bool) -> None:
        """One row of validation metrics (x100 as papers print them)."""
        names = sorted(metrics)
        row = {"iteration": iteration, "best": int(best)}
        row.update({name: f"{100 * metrics[name]:.3f}" for name in names})
        _append(self.val_path, ("iteration", "best", *names), row)
        if self.writer is not None:
            for name in names:
                self.writer.add_scalar(f"val/{name}", metrics[name], iteration)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _append(path: Path, columns: tuple[str, ...], row: dict) -> None:
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, newline="") as stream:
            header = next(csv.reader(stream), None)
        columns = tuple(header) if header else columns
    with open(path, "a", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate(path: Path, iteration: int) -> None:
    if not path.exists():
        return
    text = path.read_text()
    if text and not text.endswith("\n"):  # a kill mid-append cut the last row: drop it
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        return
    width = len(rows[0])
    kept = [rows[0]] + [
        row
        for row in rows[1:]
        if len(row) == width and row[0].isdigit() and int(row[0]) <= iteration
    ]
    if iteration == 0:
        kept = []
    with atomic_output(path) as temporary, open(temporary, "w", newline="") as stream:
        csv.writer(stream).writerows(kept)
