"""SynthVG: VG150 layout, determinism, visible boxes, annotation model, long tail and the
layout-decided situations (spatial rules, pets, perched birds, bystanders)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from basgg.boxes import decode_vg_boxes
from basgg.cli import main
from basgg.data.vg150_format import VG150Files
from basgg.data.vocabulary import BACKGROUND, VG150_OBJECTS, VG150_PREDICATES
from basgg.synthvg.animals import perched, pet
from basgg.synthvg.generator import (
    SynthSettings,
    generate_dataset,
    load_settings,
    sample_annotations,
    synthesize,
    synthvg_vocabulary,
)
from basgg.synthvg.glyphs import load_glyphs
from basgg.synthvg.grammar import (
    PREDICATE_ANCESTORS,
    PlannedObject,
    SceneBuilder,
    TrueRelation,
    annotate,
)
from basgg.synthvg.scenery import add_table, lay_ground
from basgg.synthvg.settings import ANCHOR_SITUATION_NAMES
from basgg.synthvg.situations import ANCHOR_SITUATIONS, rider
from basgg.synthvg.spatial import spatial_predicates

TINY = {"num_train": 6, "num_test": 3, "image_size": (160, 120), "seed": 3}


def _digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> VG150Files:
    settings = load_settings(**TINY)
    return generate_dataset(tmp_path_factory.mktemp("synthvg") / "a", settings, workers=1).files


def test_files_follow_the_vg150_layout(tiny_dataset: VG150Files) -> None:
    with h5py.File(tiny_dataset.roidb_path, "r") as h5:
        arrays = {name: h5[name][()] for name in h5}
    n_obj, n_rel = len(arrays["labels"]), len(arrays["predicates"])
    expected = {
        "split": ((9,), np.int32),
        "img_to_first_box": ((9,), np.int32),
        "img_to_last_box": ((9,), np.int32),
        "img_to_first_rel": ((9,), np.int32),
        "img_to_last_rel": ((9,), np.int32),
        "labels": ((n_obj, 1), np.int64),
        "boxes_1024": ((n_obj, 4), np.int32),
        "boxes_512": ((n_obj, 4), np.int32),
        "attributes": ((n_obj, 10), np.int64),
        "relationships": ((n_rel, 2), np.int32),
        "predicates": ((n_rel, 1), np.int64),
        "specific_predicates": ((n_rel, 1), np.int64),
    }
    assert {name: (a.shape, a.dtype) for name, a in arrays.items()} == expected
    assert arrays["split"].tolist() == [0] * 6 + [2] * 3  # train first, then test
    assert n_rel > 0 and (arrays["img_to_first_box"] >= 0).all()
    dicts = json.loads(tiny_dataset.dict_path.read_text())
    objects = [dicts["idx_to_label"][str(i)] for i in range(1, len(dicts["idx_to_label"]) + 1)]
    predicates = [
        dicts["idx_to_predicate"][str(i)] for i in range(1, len(dicts["idx_to_predicate"]) + 1)
    ]
    assert objects == sorted(objects) and set(objects) <= set(VG150_OBJECTS)
    assert predicates == sorted(predicates) and set(predicates) <= set(VG150_PREDICATES)
    assert 40 <= len(objects) <= 70 and 20 <= len(predicates) <= 30
    assert arrays["labels"].min() >= 1 and arrays["labels"].max() <= len(objects)
    assert arrays["predicates"].min() >= 1 and arrays["predicates"].max() <= len(predicates)
    images = json.loads(tiny_dataset.image_data_path.read_text())
    assert [(e["image_id"], e["width"], e["height"]) for e in images] == [
        (i + 1, 160, 120) for i in range(9)
    ]
    for entry in images:
        assert tiny_dataset.image_path(entry["image_id"]).stat().st_size > 1000


def test_boxes_decode_to_the_visible_extents(tiny_dataset: VG150Files) -> None:
    settings = load_settings(**TINY)
    glyphs = load_glyphs()
    vocabulary = synthvg_vocabulary(settings, glyphs)
    with h5py.File(tiny_dataset.roidb_path, "r") as h5:
        boxes_1024, first, last = (
            h5["boxes_1024"][()],
            h5["img_to_first_box"][()],
            h5["img_to_last_box"][()],
        )
        labels = h5["labels"][:, 0]
    step = 160 / 1024  # one unit of the 1024 grid in pixels
    for index in range(9):
        graph, _ = synthesize(settings, glyphs, vocabulary, index)
        rows = slice(first[index], last[index] + 1)
        decoded = decode_vg_boxes(boxes_1024[rows], 160, 120)
        assert labels[rows].tolist() == graph.labels.tolist()
        assert (decoded[:, 0] >= 0).all() and (decoded[:, 2] <= 159).all()
        assert (decoded[:, 1] >= 0).all() and (decoded[:, 3] <= 119).all()
        assert (decoded[:, 2] > decoded[:, 0]).all() and (decoded[:, 3] > decoded[:, 1]).all()
        expected = graph.boxes.numpy().copy()
        expected[:, 0::2] = np.clip(expected[:, 0::2], 0, 159)
        expected[:, 1::2] = np.clip(expected[:, 1::2], 0, 119)
        assert np.abs(decoded - expected).max() <= 2 * step + 1e-4


def test_same_seed_gives_identical_bytes_for_any_worker_count(
    tiny_dataset: VG150Files, tmp_path: Path
) -> None:
    again = generate_dataset(tmp_path / "b", load_settings(**TINY), workers=2).files
    assert _digests(Path(again.root)) == _digests(Path(tiny_dataset.root))
    other = generate_dataset(tmp_path / "c", load_settings(**{**TINY, "seed": 4}), workers=2)
    assert _digests(Path(other.files.root)) != _digests(Path(tiny_dataset.root))


def test_specific_predicates_differ_only_by_a_general_ancestor(tiny_dataset: VG150Files) -> None:
    dicts = json.loads(tiny_dataset.dict_path.read_text())
    names = {int(k): v for k, v in dicts["idx_to_predicate"].items()}
    with h5py.File(tiny_dataset.roidb_path, "r") as h5:
        labels, specific = h5["predicates"][:, 0], h5["specific_predicates"][:, 0]
    assert len(labels) == len(specific) > 0
    for label, truth in zip(labels.tolist(), specific.tolist(), strict=True):
        if label != truth:
            assert names[label] in PREDICATE_ANCESTORS[names[truth]], (names[label], names[truth])


def test_annotation_model_uses_rate_and_bias() -> None:
    relations = [TrueRelation(0, 1, "riding", "rider")] * 4000
    table = {"rider": {"riding": {"on": 0.55, "riding": 0.35, "sitting on": 0.10}}}
    rng = np.random.default_rng(0)
    annotated = annotate(
        relations, rng, annotation_rate=0.6, general_bias=1.0, label_distributions=table
    )
    shares = Counter(label for _, label in annotated)
    assert abs(len(annotated) / 4000 - 0.6) < 0.03
    assert abs(shares["on"] / len(annotated) - 0.55) < 0.04
    assert abs(shares["sitting on"] / len(annotated) - 0.10) < 0.03
    specific_only = annotate(
        relations, rng, annotation_rate=1.0, general_bias=0.0, label_distributions=table
    )
    assert {label for _, label in specific_only} == {"riding"}


def test_default_annotations_are_long_tailed() -> None:
    settings = SynthSettings()
    images = sample_annotations(settings, range(400))
    counts = Counter(label for image in images for label, _ in image)
    total = sum(counts.values())
    shares = sorted((count / total for count in counts.values()), reverse=True)
    assert shares[0] >= 0.25  # the head predicate ("on") holds a VG-like share
    assert sum(share < 0.02 for share in shares) >= 8  # a long tail of rare predicates
    assert set(counts) == set(synthvg_vocabulary(settings, load_glyphs()).predicates[1:])
    assert 5 <= total / len(images) <= 12
    assert counts.most_common(1)[0][0] == "on"


def test_settings_file_overrides_the_mix(tmp_path: Path) -> None:
    path = tmp_path / "mix.yaml"
    path.write_text(  # an unquoted "on" is YAML 1.1's True: it must still mean the predicate
        "general_bias: 0.0\n"
        "situation_weights: {lying: 0.0}\n"
        "label_distributions:\n"
        "  rider:\n"
        "    riding: {on: 0.2, riding: 0.8}\n"
    )
    settings = load_settings(path, seed=9)
    assert settings.seed == 9 and settings.situation_weights["lying"] == 0.0
    assert settings.situation_weights["rider"] == 1.0  # untouched keys keep their default
    assert settings.label_distributions["rider"]["riding"] == {"on": 0.2, "riding": 0.8}
    predicates = synthvg_vocabulary(settings, load_glyphs()).predicates
    assert predicates[0] == BACKGROUND
    assert "of" not in predicates and "laying on" not in predicates  # never produced
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"label_distributions": {"rider": {"riding": {"has": 1}}}}))
    with pytest.raises(ValueError, match="label_distributions.rider.riding"):
        load_settings(bad)


def test_synth_command_writes_dataset_and_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    code = main(
        [
            "data",
            "synth",
            "--out",
            str(out),
            "--num-train",
            "3",
            "--num-test",
            "2",
            "--image-size",
            "128",
            "96",
            "--workers",
            "1",
            "--general-bias",
            "0.5",
        ]
    )
    assert code == 0
    assert (out / "report" / "predicate_histogram.png").stat().st_size > 0
    assert "predicate" in capsys.readouterr().out
    with h5py.File(out / "VG-SGG-with-attri.h5", "r") as h5:
        assert h5["split"][()].tolist() == [0, 0, 0, 2, 2]
    assert main(["data", "synth", "--out", str(out), "--num-train", "1"]) == 2  # exists


def _thing(name: str, box: tuple[float, float, float, float]) -> PlannedObject:
    return PlannedObject(name=name, box=box, depth=0.0, group=0)


def test_spatial_rules_by_hand() -> None:
    person = _thing("person", (95, 70, 135, 190))
    # 10 px clear of the head (>= 0.02 * 240 = 4.8) with horizontal overlap: above / under
    assert spatial_predicates(_thing("bird", (100, 40, 120, 60)), person, 240) == (
        "above",
        "under",
    )
    assert spatial_predicates(_thing("bird", (100, 57, 120, 67)), person, 240) is None  # 3 px
    man = _thing("man", (120, 70, 160, 190))
    # overlapping, feet 30 px apart (> 0.1 * 240 = 24): the farther one is behind
    assert spatial_predicates(_thing("person", (100, 50, 140, 160)), man, 240) == (
        "behind",
        "in front of",
    )
    # feet 18 px apart: neither clearly behind nor near (< 0.05 * 240 = 12): left out
    assert spatial_predicates(_thing("person", (100, 50, 140, 172)), man, 240) is None
    # feet 6 px apart, 10 px gap (< half the narrower width): near both ways
    assert spatial_predicates(
        _thing("person", (110, 50, 150, 184)), _thing("man", (160, 70, 200, 190)), 240
    ) == (
        "near",
        "near",
    )


def _scene(seed: int, kind: str) -> SceneBuilder:
    scene = SceneBuilder(
        rng=np.random.default_rng(seed), glyphs=load_glyphs(), width=320, height=240, kind=kind
    )
    lay_ground(scene)
    return scene


def test_pets_are_on_or_under_furniture_as_drawn() -> None:
    seen = Counter()
    for seed in range(40):
        scene = _scene(seed, "indoor")
        add_table(scene, scene.new_group())
        pet(scene)
        relation = scene.relations[-1]
        ax1, ay1, ax2, ay2 = scene.objects[relation.subject].box
        x1, y1, x2, y2 = scene.objects[relation.object].box
        seen[(scene.objects[relation.object].name, relation.predicate)] += 1
        assert x1 < (ax1 + ax2) / 2 < x2
        if relation.predicate == "on":  # feet on the top board
            assert y1 < ay2 < y1 + 0.25 * (y2 - y1)
        else:  # on the floor, below the board
            assert relation.predicate == "under" and ay2 >= y2 and ay1 > y1 + 0.3 * (y2 - y1)
    assert set(seen) == {("table", "on"), ("table", "under")}
    assert min(seen.values()) >= 10


def test_perched_birds_sit_in_the_crown_and_doves_fly_above() -> None:
    seen = Counter()
    for seed in range(40):
        scene = _scene(seed, "park")
        perched(scene)
        for relation in scene.relations:
            bird, support = scene.objects[relation.subject], scene.objects[relation.object]
            seen[relation.predicate] += 1
            assert bird.name == "bird" and support.name in ("tree", "fence")
            assert support.box[0] < (bird.box[0] + bird.box[2]) / 2 < support.box[2]
            if relation.predicate == "on":
                assert support.box[1] < bird.box[3] < support.box[3]
            else:  # the layout rule agrees with the situation
                assert spatial_predicates(bird, support, 240) == ("above", "under")
    assert seen["on"] >= 35 and seen["above"] >= 8


def test_bystanders_stand_near_a_ridden_mount() -> None:
    seen = Counter()
    for seed in range(60):
        scene = _scene(seed, "park")
        rider(scene)
        for relation in scene.relations:
            seen[relation.predicate] += 1
            if relation.predicate == "near":
                person, mount = scene.objects[relation.subject], scene.objects[relation.object]
                assert person.name in ("person", "man", "woman")
                assert mount.name in ("horse", "elephant", "bike")
                assert spatial_predicates(person, mount, 240) == ("near", "near")
    assert seen["riding"] == 60 and seen["near"] >= 12


def test_vocabulary_follows_the_situations_that_record_spatial_relations() -> None:
    # no sampler draws and no perched birds: nothing above, behind or in front of; bystanders
    # are still "near" and pets or bags "under" a table
    settings = load_settings(spatial_per_image=0.0, situation_weights={"perched": 0.0})
    predicates = synthvg_vocabulary(settings, load_glyphs()).predicates
    never = {"above", "behind", "in front of"}
    assert not never & set(predicates) and {"near", "under"} <= set(predicates)
    labels = {label for image in sample_annotations(settings, range(150)) for label, _ in image}
    assert not never & labels and {"near", "under"} <= labels


def test_settings_name_the_anchor_situations_the_generator_builds() -> None:
    assert ANCHOR_SITUATION_NAMES == tuple(ANCHOR_SITUATIONS)  # same names, same order
