"""SynthVG spatial relations: what the finished layout makes true between unrelated objects.

:func:`spatial_predicates` reads above / under, behind / in front of and near off two planned
boxes, with clear margins so that ambiguous layouts stay unannotated;
:func:`add_spatial_relations` draws a scene's spatial relations from the candidate pairs of
objects that no situation relates yet.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from basgg.synthvg.grammar import PlannedObject, SceneBuilder

# objects off the ground: the only subjects of "above" (and objects of "under")
ELEVATED = frozenset({"bird", "airplane", "kite", "sign", "clock", "light", "window", "shelf"})
# feet this far apart (fraction of the image height) or more: behind / in front of when the
# boxes overlap; less than NEAR_DEPTH_GAP apart: near. Pairs in between are left unannotated.
BEHIND_DEPTH_GAP = 0.1
NEAR_DEPTH_GAP = 0.05
ABOVE_GAP = 0.02  # an elevated object at least this far (fraction of image height) above


def foot_y(planned: PlannedObject) -> float:
    """Where an object meets the ground (the bottom of its box)."""
    return planned.box[3]


def spatial_predicates(
    first: PlannedObject, second: PlannedObject, image_height: int
) -> tuple[str, str] | None:
    """The spatial predicates (first -> second, second -> first) the layout makes true.

    ``above`` / ``under``: an elevated object (``ELEVATED``) entirely above another, with a
    clear gap and horizontal overlap; ``behind`` / ``in front of``: grounded objects whose
    boxes overlap at clearly different depths (feet ``BEHIND_DEPTH_GAP`` apart); ``near``:
    grounded objects at a similar depth (feet under ``NEAR_DEPTH_GAP`` apart), a small gap
    apart. Pairs in between are ambiguous and left out.
    """
    ax1, ay1, ax2, ay2 = first.box
    bx1, by1, bx2, by2 = second.box
    overlap_x = min(ax2, bx2) - max(ax1, bx1)
    min_width = min(ax2 - ax1, bx2 - bx1)
    elevated = (first.name in ELEVATED, second.name in ELEVATED)
    if overlap_x > 0.25 * min_width and elevated[0] != elevated[1]:
        clearance = ABOVE_GAP * image_height
        if elevated[0] and ay2 + clearance <= by1:
            return "above", "under"
        if elevated[1] and by2 + clearance <= ay1:
            return "under", "above"
    if any(elevated):
        return None
    depth_gap = foot_y(first) - foot_y(second)
    overlap_y = min(ay2, by2) - max(ay1, by1)
    overlapping = overlap_x > 0.2 * min_width and overlap_y > 0
    if overlapping and abs(depth_gap) > BEHIND_DEPTH_GAP * image_height:
        return ("behind", "in front of") if depth_gap < 0 else ("in front of", "behind")
    if abs(depth_gap) < NEAR_DEPTH_GAP * image_height and -overlap_x < 0.5 * min_width:
        return "near", "near"
    return None


def spatial_candidates(scene: SceneBuilder) -> list[tuple[int, int, str]]:
    """Every true (subject, object, predicate) spatial relation between unrelated objects.

    Only primary objects of different situations (groups) take part.
    """
    found = []
    primary = [i for i, o in enumerate(scene.objects) if o.primary]
    for position, a in enumerate(primary):
        for b in primary[position + 1 :]:
            first, second = scene.objects[a], scene.objects[b]
            if first.group == second.group or scene.related(a, b):
                continue
            predicates = spatial_predicates(first, second, scene.height)
            if predicates is not None:
                found += [(a, b, predicates[0]), (b, a, predicates[1])]
    return found


def add_spatial_relations(scene: SceneBuilder, mean: float, weights: Mapping[str, float]) -> None:
    """Record about ``mean`` spatial relations, drawn from the layout's candidates.

    Each unordered pair takes at most one relation; predicates are drawn with ``weights``.
    Most scenes have fewer clear candidates than the default mean, so nearly every clear
    configuration becomes a true relation (the annotator then keeps some of them).
    """
    candidates = [c for c in spatial_candidates(scene) if weights.get(c[2], 0.0) > 0]
    wanted = int(scene.rng.poisson(mean))
    while wanted > 0 and candidates:
        p = np.array([weights[c[2]] for c in candidates], dtype=np.float64)
        subject, object_, predicate = candidates[
            int(scene.rng.choice(len(candidates), p=p / p.sum()))
        ]
        scene.relate(subject, object_, predicate, "spatial")
        candidates = [c for c in candidates if {c[0], c[1]} != {subject, object_}]
        wanted -= 1
