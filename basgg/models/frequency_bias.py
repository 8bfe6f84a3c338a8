"""The trainable frequency bias: log p(predicate | subject class, object class) as logits."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FrequencyBias(nn.Module):
    """An embedding table with one row of predicate logits per ordered class pair.

    Row ``s * C + o`` holds the logits for subject class ``s`` and object class ``o``. The
    table starts from the training statistics (``log(p(predicate | s, o) + 1e-3)``, computed
    by the data layer) and stays trainable, as in Neural Motifs and Scene-Graph-Benchmark.

    Args:
        initial_table: (C * C, P + 1) initial logits, background predicate in column 0.
        num_objects: C, the number of object classes including background.
    """

    def __init__(self, *, initial_table: Tensor, num_objects: int) -> None:
        super().__init__()
        check_frequency_table(initial_table, num_objects)
        self.num_objects = num_objects
        self.table = nn.Embedding(num_objects * num_objects, initial_table.shape[1])
        with torch.no_grad():
            self.table.weight.copy_(initial_table.float())

    @property
    def num_predicates(self) -> int:
        """P + 1, the number of predicate classes including background."""
        return int(self.table.weight.shape[1])

    def forward(self, subject_labels: Tensor, object_labels: Tensor) -> Tensor:
        """Logits of each pair. (R,) subject and (R,) object classes -> (R, P + 1)."""
        return self.table(subject_labels.long() * self.num_objects + object_labels.long())

    def pair_table(self) -> Tensor:
        """The table as (C, C, P + 1): entry ``[s, o]`` is the row of that class pair."""
        return self.table.weight.view(self.num_objects, self.num_objects, -1)


def check_frequency_table(table: Tensor, num_objects: int) -> None:
    """Raise ``ValueError`` naming ``frequency_bias_init`` if ``table`` is not (C * C, P + 1)."""
    expected_rows = num_objects * num_objects
    if table.ndim != 2 or table.shape[0] != expected_rows or table.shape[1] < 2:
        raise ValueError(
            f"frequency_bias_init: expected shape ({expected_rows}, P + 1) for "
            f"{num_objects} object classes, got {tuple(table.shape)}"
        )
    if not torch.isfinite(table).all():
        raise ValueError("frequency_bias_init: contains NaN or infinite values")
