"""SGB's relation features from the detector, and where features are stored.

Hand values for the rectangle masks and cache sizes; the extractor checked against the
detector's own modules; the cache refusal with a patched free space; cached == online.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.ops import roi_align

from basgg.config import load_config
from basgg.data.vg150_format import VG150Files, read_vocabulary
from basgg.models import build_relation_features
from basgg.models.detector import Detector
from basgg.models.relation_features import rectangle_masks
from basgg.training import feature_storage
from basgg.training.checkpoint import read_checkpoint
from basgg.training.feature_storage import (
    CacheTooLargeError,
    OnlinePyramids,
    check_cache_fits,
    choose_storage,
    extract_pyramids,
    pyramid_cache_bytes,
    read_pyramid_cache,
)
from basgg.training.runs import evaluate_checkpoint, load_trained_model, train
from tests.test_detector import tiny_detector
from tests.test_sgdet import SGDET, detector_checkpoint  # noqa: F401
from tests.test_training import tiny_overrides

DETECTOR_FEATURES = ["MODEL.ROI_RELATION_HEAD.FEATURE_EXTRACTOR", "RelationFeatureExtractor"]


def images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=generator),
        torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8, generator=generator),
    ]


def boxes() -> list[torch.Tensor]:
    return [
        torch.tensor([[4.0, 4.0, 40.0, 30.0], [30.0, 20.0, 90.0, 60.0], [0.0, 0.0, 96.0, 64.0]]),
        torch.tensor([[10.0, 10.0, 30.0, 50.0], [40.0, 5.0, 79.0, 59.0]]),
    ]


def pairs() -> list[torch.Tensor]:
    return [torch.tensor([[0, 1], [1, 0], [2, 0]]), torch.tensor([[1, 0]])]


def parts(detector: Detector, *, pool_all_levels: bool = True):
    return build_relation_features(detector, pool_all_levels=pool_all_levels)


# ----------------------------------------------------------------------------- masks


def test_rectangle_masks_cover_floor_to_ceil_on_the_image_grid() -> None:
    subject = torch.tensor([[0.0, 0.0, 50.0, 50.0]])
    object_ = torch.tensor([[60.0, 20.0, 100.0, 30.0]])  # x 16.2..27 -> 16..26, y 5.4..8.1 -> 5..9
    masks = rectangle_masks(subject, object_, (100, 100), 27)
    assert masks.shape == (1, 2, 27, 27)
    assert masks[0, 0].sum() == 15 * 15  # 0..13.5 -> cells 0..14
    assert masks[0, 0, 14, 14] == 1 and masks[0, 0, 15, 14] == 0
    assert masks[0, 1].sum() == 11 * 5  # x 16..26 (clipped to the grid), y 5..9
    assert masks[0, 1, 5, 16] == 1 and masks[0, 1, 4, 16] == 0 and masks[0, 1, 10, 16] == 0


def test_rectangle_masks_scale_each_axis_by_its_own_side() -> None:
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    masks = rectangle_masks(box, box, (100, 20), 27)  # height 100, width 20
    # x: 0..13.5 -> 0..14 (15 columns); y: 0..2.7 -> 0..3 (4 rows)
    assert masks[0, 0].sum(dim=1)[0] == 15 and masks[0, 0].sum(dim=0)[0] == 4


# ----------------------------------------------------------------------------- extractor


def test_object_features_are_the_detectors_box_head_at_the_start() -> None:
    detector = tiny_detector()
    pyramid, extractor = parts(detector)
    image = images()[0]  # 64 x 96: the detector input size, no resize and no padding
    (image_pyramid,) = pyramid([image])
    objects, unions = extractor([image_pyramid], [boxes()[0]], [pairs()[0]])
    assert objects[0].shape == (3, 32) and unions[0].shape == (3, 32)
    rcnn = detector.rcnn
    with torch.no_grad():
        image_list, _ = rcnn.transform([image.float()])
        features = rcnn.backbone(image_list.tensors)
        pooled = rcnn.roi_heads.box_roi_pool(features, [boxes()[0]], image_list.image_sizes)
        expected = rcnn.roi_heads.box_head(pooled)
    torch.testing.assert_close(objects[0], expected)


def test_union_features_pool_all_levels_in_order_then_add_the_rect_stream() -> None:
    detector = tiny_detector()
    pyramid, extractor = parts(detector)
    extractor.eval()
    channels = extractor.in_channels
    levels = extractor.level_names
    conv = extractor.union_reduce[0]
    with torch.no_grad():  # the reduction keeps level 1's channels only
        conv.weight.zero_()
        conv.bias.zero_()
        for channel in range(channels):
            conv.weight[channel, channels * 1 + channel, 1, 1] = 1.0
    image_pyramids = pyramid(images())
    _, unions = extractor(image_pyramids, boxes(), pairs())
    assert [u.shape for u in unions] == [(3, 32), (1, 32)]
    image_pyramid = image_pyramids[1]
    scale = torch.tensor([image_pyramid.scale[1], image_pyramid.scale[0]] * 2)
    subject, object_ = boxes()[1][1] * scale, boxes()[1][0] * scale
    union = torch.cat(
        [torch.minimum(subject[:2], object_[:2]), torch.maximum(subject[2:], object_[2:])]
    )
    level = image_pyramid.levels[levels[1]][None]
    stride = image_pyramid.strides[levels[1]]
    pooled = roi_align(level, [union[None]], 7, 1.0 / stride, 2, aligned=False).relu()
    masks = rectangle_masks(subject[None], object_[None], image_pyramid.input_size, 27)
    with torch.no_grad():
        expected = extractor.union_head(pooled + extractor.rect_conv(masks))
    torch.testing.assert_close(unions[1], expected)


def test_only_the_feature_layers_train_and_the_trunk_stays_frozen() -> None:
    detector = tiny_detector()
    pyramid, extractor = parts(detector)
    pyramid.train()
    assert not pyramid.training and not any(p.requires_grad for p in pyramid.parameters())
    objects, unions = extractor(pyramid(images()), boxes(), pairs())
    (torch.cat(objects).sum() + torch.cat(unions).sum()).backward()
    for name, parameter in extractor.named_parameters():
        assert parameter.grad is not None, name
    assert set(dict(extractor.named_children())) >= {
        "object_head", "union_head", "union_reduce", "rect_conv"
    }  # fmt: skip


def test_single_level_union_pooling_uses_the_box_pooler() -> None:
    pyramid, extractor = parts(tiny_detector(), pool_all_levels=False)
    assert extractor.union_reduce is None
    _, unions = extractor(pyramid(images()), boxes(), pairs())
    assert [u.shape for u in unions] == [(3, 32), (1, 32)]


# ----------------------------------------------------------------------------- storage


def test_pyramid_cache_size_by_hand() -> None:
    # 600 x 800 -> 600 x 800 (min 600, max 1000); strides 8/16: 75*100 + 38*50 = 9400 cells
    size = pyramid_cache_bytes(
        [(600, 800), (300, 400)], channels=4, strides=[8, 16], min_size=600, max_size=1000
    )
    assert size == 2 * (9400 * 4 * 2)  # the 300 x 400 image is scaled up to 600 x 800


def test_a_cache_the_disk_cannot_hold_is_refused_with_sizes_and_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(feature_storage, "free_bytes", lambda path: 3 * 10**9)
    with pytest.raises(CacheTooLargeError) as error:
        check_cache_fits(5 * 10**9, tmp_path, what="detector pyramid features of train")
    message = str(error.value)
    assert "5.00 GB" in message and "3.00 GB free" in message
    assert "MODEL.FEATURE_STORAGE online" in message and "train" in message
    check_cache_fits(10**9, tmp_path, what="x")  # 1 GB + the 1 GiB margin fits in 3 GB
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    arguments = {"directory": tmp_path, "what": "x"}
    assert choose_storage("auto", device=cpu, needed=5 * 10**9, **arguments) == "online"
    assert choose_storage("auto", device=cpu, needed=10**9, **arguments) == "cache"
    assert choose_storage("auto", device=cuda, needed=10, **arguments) == "online"
    assert choose_storage("online", device=cpu, needed=10, **arguments) == "online"
    with pytest.raises(CacheTooLargeError):
        choose_storage("cache", device=cpu, needed=5 * 10**9, **arguments)


def test_the_estimate_is_the_size_of_the_cache_written(tmp_path: Path) -> None:
    detector = tiny_detector()
    pyramid, _ = parts(detector)
    graphs = [_graph(b, image) for b, image in zip(boxes(), images(), strict=True)]
    cache = extract_pyramids(pyramid, graphs, lambda i: images()[i], tmp_path / "p", batch_size=2)
    estimate = pyramid_cache_bytes(
        [g.image_size for g in graphs], channels=16, strides=[8, 16, 32], min_size=64, max_size=96
    )
    assert cache.path.stat().st_size == estimate
    assert read_pyramid_cache(tmp_path / "p", num_images=2) is not None
    assert read_pyramid_cache(tmp_path / "p", num_images=3) is None


def test_cached_and_online_features_agree(tmp_path: Path) -> None:
    detector = tiny_detector()
    pyramid, extractor = parts(detector)
    extractor.eval()
    graphs = [_graph(b, image) for b, image in zip(boxes(), images(), strict=True)]
    cache = extract_pyramids(pyramid, graphs, lambda i: images()[i], tmp_path / "p", batch_size=1)
    online = OnlinePyramids(pyramid, lambda i: images()[i], [3, 2])
    assert torch.equal(cache.num_objects, online.num_objects)
    cached, _ = cache.take([1, 0])
    computed, _ = online.take([1, 0])  # one batch of both sizes (padded together)
    for stored, fresh in zip(cached, computed, strict=True):
        assert stored.strides == fresh.strides and stored.input_size == fresh.input_size
        for name, level in fresh.levels.items():
            assert stored.levels[name].shape == level.shape
            torch.testing.assert_close(stored.levels[name], level.half().float(), atol=1e-5, rtol=0)
    with torch.no_grad():
        from_cache = extractor(cached, boxes()[::-1], pairs()[::-1])
        from_images = extractor(computed, boxes()[::-1], pairs()[::-1])
    for a, b in zip(from_cache[0] + from_cache[1], from_images[0] + from_images[1], strict=True):
        torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)


def _graph(image_boxes: torch.Tensor, image: torch.Tensor):
    from basgg.structures import SceneGraph

    count = len(image_boxes)
    return SceneGraph(
        boxes=image_boxes,
        labels=torch.ones(count, dtype=torch.int64),
        relation_pairs=torch.zeros((0, 2), dtype=torch.int64),
        predicates=torch.zeros(0, dtype=torch.int64),
        image_size=(int(image.shape[-2]), int(image.shape[-1])),
    )


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize(
    ("predictor", "mode", "storage"),
    [
        ("MotifPredictor", "predcls", "cache"),
        ("VCTreePredictor", "sgcls", "online"),
        ("TransformerPredictor", "sgdet", "online"),
    ],
)
def test_detector_features_train_in_every_mode(
    tiny_vg150: VG150Files,
    detector_checkpoint: Path,  # noqa: F811
    tmp_path: Path,
    predictor: str,
    mode: str,
    storage: str,
) -> None:
    flags = {
        "predcls": [],
        "sgcls": ["MODEL.ROI_RELATION_HEAD.USE_GT_OBJECT_LABEL", "False"],
        "sgdet": SGDET,
    }[mode]
    cache = tmp_path / "cache"
    config = load_config(None, [
        *tiny_overrides(tiny_vg150, tmp_path / "run", cache), *flags, *DETECTOR_FEATURES,
        "MODEL.PRETRAINED_DETECTOR_CKPT", str(detector_checkpoint),
        "MODEL.DETECTOR.SCORE_THRESH", "0.0", "MODEL.DETECTOR.DETECTIONS_PER_IMG", "5",
        "MODEL.ROI_RELATION_HEAD.PREDICTOR", predictor, "MODEL.FEATURE_STORAGE", storage,
        "SOLVER.MAX_ITER", "2",
    ])  # fmt: skip
    assert config.mode.value == mode
    assert train(config, progress=False).iteration == 2
    saved = read_checkpoint(tmp_path / "run" / "model_final.pth")
    detector = read_checkpoint(detector_checkpoint)["model"]
    weights = saved["model"]
    assert saved["model_info"]["feature_extractor"] == "RelationFeatureExtractor"
    for key, tensor in detector.items():  # the trunk + FPN did not move
        if key.startswith("rcnn.backbone."):
            name = "feature_pyramid.backbone." + key.removeprefix("rcnn.backbone.")
            assert torch.equal(weights[name], tensor), key
    start = detector["rcnn.roi_heads.box_head.fc6.weight"]
    assert not torch.equal(weights["relation_features.union_head.fc6.weight"], start)
    assert math.isfinite(float(weights["relation_features.object_head.fc7.weight"].sum()))
    assert bool(list(cache.glob("pyramids_*"))) == (storage == "cache")

    # basgg test and the whole model on an image, from the relation checkpoint alone
    result, _ = evaluate_checkpoint(config, progress=False)
    assert "R@50" in result.metrics
    vocabulary = read_vocabulary(tiny_vg150.dict_path)
    model = load_trained_model(
        config, tmp_path / "run" / "model_final.pth", vocabulary=vocabulary, device="cpu"
    )
    image = torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8)
    given = None if mode == "sgdet" else [_graph(boxes()[1], image)]
    (prediction,) = model.predict_images([image], given)
    assert prediction.predicate_scores.shape[1] == len(vocabulary.predicates)
    if mode != "sgdet":
        assert prediction.relation_pairs.shape == (2, 2)


def test_ba_sgg_stage_two_keeps_the_trained_feature_layers(
    tiny_vg150: VG150Files,
    detector_checkpoint: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    base = [*DETECTOR_FEATURES, "MODEL.FEATURE_STORAGE", "online"]
    one = load_config(None, [
        *tiny_overrides(tiny_vg150, tmp_path / "one", tmp_path / "cache"), *base,
        "MODEL.PRETRAINED_DETECTOR_CKPT", str(detector_checkpoint), "SOLVER.MAX_ITER", "2",
    ])  # fmt: skip
    train(one, progress=False)
    stage_one = tmp_path / "one" / "model_final.pth"
    two = load_config(None, [
        *tiny_overrides(tiny_vg150, tmp_path / "two", tmp_path / "cache"), *base,
        "MODEL.PRETRAINED_DETECTOR_CKPT", str(detector_checkpoint),  # must not reset the heads
        "MODEL.PRETRAINED_MODEL_CKPT", str(stage_one),
        "MODEL.ROI_RELATION_HEAD.WITH_CLEAN_CLASSIFIER", "True", "SOLVER.MAX_ITER", "2",
    ])  # fmt: skip
    assert train(two, progress=False).iteration == 2
    before = read_checkpoint(stage_one)["model"]
    after = read_checkpoint(tmp_path / "two" / "model_final.pth")
    assert after["model_info"]["clean_branch"]
    features = [key for key in before if key.startswith("relation_features.")]
    assert any(key.endswith("union_head.fc6.weight") for key in features)
    for key in features:  # frozen in stage 2, and not reloaded from the detector
        if "running_" not in key and "num_batches" not in key:  # BatchNorm statistics move
            assert torch.equal(after["model"][key], before[key]), key
    assert any("_clean" in key for key in after["model"])  # the branch that trained


def test_detector_features_without_a_detector_are_refused(tmp_path: Path) -> None:
    from basgg.training.setup import check_stage

    config = load_config(None, [*DETECTOR_FEATURES, "OUTPUT_DIR", str(tmp_path)])
    with pytest.raises(ValueError, match="FEATURE_EXTRACTOR RelationFeatureExtractor needs a"):
        check_stage(config, training=True)
    check_stage(load_config(None, []), training=True)  # the frozen trunk needs none
