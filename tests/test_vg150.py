"""VG150Dataset on files written by an independent writer: boxes, splits, filters, targets."""

from __future__ import annotations

import json
import pickle
import time
import warnings

import h5py
import numpy as np
import pytest
import torch

from basgg.data import VG150Dataset, VG150Error, VG150Files


def dataset(files: VG150Files, split: str, **options) -> VG150Dataset:
    options.setdefault("val_size", 1)
    options.setdefault("load_images", False)
    return VG150Dataset(files, split=split, **options)


def triplets(graph) -> list[list[int]]:
    return torch.cat([graph.relation_pairs, graph.predicates[:, None]], dim=1).tolist()


def test_doc_example_box_decodes_with_json_size(tiny_vg150):
    val = dataset(tiny_vg150, "val")
    graph = val.ground_truth(0)
    assert graph.image_id == 101 and graph.image_size == (600, 800)
    expected = [[100, 50, 300, 150], [195.3125, 117.1875, 273.4375, 195.3125]]
    assert graph.boxes.dtype == torch.float32
    assert graph.boxes.tolist() == expected
    assert graph.labels.tolist() == [3, 4]
    assert graph.relation_pairs.tolist() == [[0, 1]] and graph.predicates.tolist() == [3]
    assert graph.specific_predicates is None
    assert val.vocabulary.objects == ("__background__", "cat", "dog", "man", "tree")
    assert val.vocabulary.predicates == ("__background__", "has", "near", "on")


def test_val_is_carved_from_first_train_flag_images(tiny_vg150):
    # train-flag images with boxes and relations: rows 0, 1, 3, 5 (2 has no relations, 4 no boxes)
    assert dataset(tiny_vg150, "val", val_size=2).h5_indices.tolist() == [0, 1]
    assert dataset(tiny_vg150, "train", val_size=2).h5_indices.tolist() == [3, 5]
    assert dataset(tiny_vg150, "train", val_size=0).h5_indices.tolist() == [0, 1, 3, 5]
    assert dataset(tiny_vg150, "val", val_size=0).h5_indices.tolist() == []
    test = dataset(tiny_vg150, "test", val_size=2)
    assert test.h5_indices.tolist() == [6, 7]
    assert test.image_ids == [107, 108] and len(test) == 2


def test_skipped_image_entry_is_removed_before_aligning(tiny_vg150):
    # image_data.json holds VG image 1592 between rows 2 and 3, with no h5 row (as in VG150)
    train = dataset(tiny_vg150, "train", val_size=2)
    assert train.image_ids == [104, 106]
    assert train.image_path(0) == tiny_vg150.image_dir_path / "104.jpg"
    assert train.ground_truth(0).image_size == (768, 1024)


def test_filter_empty_rels_off_keeps_images_with_boxes_only(tiny_vg150):
    options = {"val_size": 2, "filter_empty_rels": False}
    assert dataset(tiny_vg150, "train", **options).h5_indices.tolist() == [2, 3, 5]
    assert dataset(tiny_vg150, "test", **options).h5_indices.tolist() == [6, 7, 8]
    empty = dataset(tiny_vg150, "train", **options).ground_truth(0)
    assert empty.num_objects == 1 and empty.num_relations == 0


def test_num_images_cuts_before_the_val_carve(tiny_vg150):
    assert dataset(tiny_vg150, "val", num_images=3).h5_indices.tolist() == [0]
    assert dataset(tiny_vg150, "train", num_images=3).h5_indices.tolist() == [1, 3]
    assert dataset(tiny_vg150, "test", num_images=1).h5_indices.tolist() == [6]


def test_duplicate_filter_keeps_one_random_predicate_per_pair(tiny_vg150):
    train = dataset(tiny_vg150, "train")  # item 0 is row 1: (0, 1) near, (0, 1) on, (0, 2) has
    chosen = set()
    for seed in range(30):
        torch.manual_seed(seed)
        _, graph = train[0]
        assert graph.relation_pairs.tolist() == [[0, 1], [0, 2]]
        assert graph.predicates[1] == 1
        chosen.add(int(graph.predicates[0]))
        torch.manual_seed(seed)
        assert train[0][1].predicates.tolist() == graph.predicates.tolist()
    assert chosen == {2, 3}


def test_target_draws_with_its_generator_as_the_global_rng_would(tiny_vg150):
    """``target(i, generator=g)`` is ``dataset[i]``'s graph under the same seed, and leaves
    torch's global RNG alone (a batch can load on another thread)."""
    train = dataset(tiny_vg150, "train")
    for seed in range(10):
        torch.manual_seed(seed)
        _, expected = train[0]
        torch.manual_seed(1000)
        state = torch.get_rng_state()
        found = train.target(0, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(torch.get_rng_state(), state)
        assert triplets(found) == triplets(expected)
        assert torch.equal(found.boxes, expected.boxes)


def test_duplicates_are_kept_without_the_filter_and_in_evaluation_targets(tiny_vg150):
    raw = [[0, 1, 2], [0, 1, 3], [0, 2, 1]]
    kept = dataset(tiny_vg150, "train", filter_duplicate_rels=False)[0][1]
    assert triplets(kept) == raw
    assert triplets(dataset(tiny_vg150, "train").ground_truth(0)) == raw
    test_target = dataset(tiny_vg150, "test", filter_duplicate_rels=True)[0][1]
    assert test_target.predicates.tolist() == [2, 3]  # the filter is train-only


def test_training_target_drops_empty_boxes_and_remaps_relations(tiny_vg150):
    train = dataset(tiny_vg150, "train")  # item 2 is row 5; its box 0 is below the image
    ground_truth = train.ground_truth(2)
    assert ground_truth.boxes.tolist() == [
        [480, 767, 520, 767], [150, 150, 250, 250], [170, 170, 270, 270],
    ]  # fmt: skip
    assert ground_truth.relation_pairs.tolist() == [[1, 2], [0, 1]]
    _, target = train[2]
    assert target.boxes.tolist() == [[150, 150, 250, 250], [170, 170, 270, 270]]
    assert target.labels.tolist() == [3, 1]
    assert target.relation_pairs.tolist() == [[0, 1]] and target.predicates.tolist() == [1]


def test_non_overlap_filter_uses_plus_one_and_drops_images(tiny_vg150):
    train = dataset(tiny_vg150, "train", filter_non_overlap=True)
    # row 3's only relation does not overlap; row 1's touching pair overlaps under +1
    assert train.h5_indices.tolist() == [1, 5]
    assert train.ground_truth(0).predicates.tolist() == [2, 3]
    assert train.ground_truth(1).relation_pairs.tolist() == [[1, 2]]
    assert train.relation_counts().tolist() == [0, 1, 1, 1]
    test = dataset(tiny_vg150, "test", filter_non_overlap=True)  # train-only: ignored
    assert test.h5_indices.tolist() == [6, 7]


def test_relation_counts_count_raw_rows(tiny_vg150):
    assert dataset(tiny_vg150, "train").relation_counts().tolist() == [0, 2, 1, 3]
    assert dataset(tiny_vg150, "test").relation_counts().tolist() == [0, 1, 1, 1]
    assert dataset(tiny_vg150, "val").relation_counts().tolist() == [0, 0, 0, 1]


def test_missing_image_files_are_dropped_only_when_loading_images(write_raw, tmp_path, annotations):
    files = write_raw(tmp_path, annotations)
    (files.image_dir_path / "104.jpg").unlink()
    with pytest.warns(UserWarning, match="104"):
        loading = dataset(files, "train", load_images=True)
    assert loading.h5_indices.tolist() == [1, 5]
    assert dataset(files, "train", load_images=False).h5_indices.tolist() == [1, 3, 5]


def test_image_is_loaded_as_uint8_chw(tiny_vg150):
    val = dataset(tiny_vg150, "val", load_images=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image, graph = val[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 600, 800)
    assert torch.allclose(image.float().mean(dim=(1, 2)), torch.tensor([101.0, 40, 200]), atol=3)
    assert graph.boxes.tolist()[0] == [100, 50, 300, 150]
    assert dataset(tiny_vg150, "val")[0][0] is None


def test_image_transform_gets_image_and_target(tiny_vg150):
    def halve(image, graph):
        graph.boxes = graph.boxes / 2
        return image[:, ::2, ::2], graph

    image, graph = dataset(tiny_vg150, "val", load_images=True, image_transform=halve)[0]
    assert image.shape == (3, 300, 400)
    assert graph.boxes.tolist()[0] == [50, 25, 150, 75]


def test_specific_predicates_follow_duplicate_filtering(write_raw, tmp_path, annotations):
    predicates = annotations["h5"]["predicates"][:, 0]
    specific = {1: 3, 2: 1, 3: 2}  # a bijection, so every row's value is recognisable
    annotations["h5"]["specific_predicates"] = np.array([[specific[p]] for p in predicates])
    files = write_raw(tmp_path, annotations, images=False)
    train = dataset(files, "train")
    assert train.ground_truth(0).specific_predicates.tolist() == [1, 2, 3]
    for seed in range(10):
        torch.manual_seed(seed)
        _, graph = train[0]
        expected = [specific[int(p)] for p in graph.predicates]
        assert graph.specific_predicates.tolist() == expected


def test_dataset_holds_no_open_file_and_pickles(tiny_vg150):
    train = dataset(tiny_vg150, "train")
    with h5py.File(tiny_vg150.roidb_path, "r+"):
        pass  # h5py refuses "r+" on a file this process still holds open read-only
    clone = pickle.loads(pickle.dumps(train))
    assert clone.ground_truth(1).boxes.tolist() == train.ground_truth(1).boxes.tolist()


def _write_vg150_sized(root, test_flags: int) -> VG150Files:
    """108,073 images of two boxes: ``test_flags`` test, then train, then without relations."""
    num_images, num_related = 108_073, 57_723 + 5_000 + 26_446
    split = np.zeros(num_images, np.int32)
    split[:test_flags] = 2
    first_box = np.arange(num_images, dtype=np.int32) * 2
    first_rel = np.where(np.arange(num_images) < num_related, np.arange(num_images), -1)
    boxes = np.tile(np.array([[50, 50, 40, 40], [60, 60, 40, 40]], np.int32), (num_images, 1))
    relationships = np.stack([first_box[:num_related], first_box[:num_related] + 1], axis=1)
    root.mkdir()
    with h5py.File(root / "VG-SGG-with-attri.h5", "w") as h5:
        h5["split"] = split
        h5["img_to_first_box"], h5["img_to_last_box"] = first_box, first_box + 1
        h5["img_to_first_rel"] = first_rel.astype(np.int32)
        h5["img_to_last_rel"] = first_rel.astype(np.int32)
        h5["boxes_1024"] = boxes
        h5["labels"] = np.ones((2 * num_images, 1), np.int64)
        h5["relationships"] = relationships.astype(np.int32)
        h5["predicates"] = np.ones((num_related, 1), np.int64)
    entries = [{"image_id": i + 10_000, "width": 100, "height": 100} for i in range(num_images)]
    (root / "image_data.json").write_text(json.dumps(entries))
    dicts = {"label_to_idx": {"a": 1}, "idx_to_label": {"1": "a"}}
    dicts |= {"predicate_to_idx": {"p": 1}, "idx_to_predicate": {"1": "p"}}
    (root / "VG-SGG-dicts-with-attri.json").write_text(json.dumps(dicts))
    return VG150Files(root=root)


def test_real_size_h5_asserts_the_vg150_split_sizes(tmp_path):
    files = _write_vg150_sized(tmp_path / "ok", test_flags=26_446)
    start = time.perf_counter()
    train = VG150Dataset(files, split="train", load_images=False)
    elapsed = time.perf_counter() - start
    assert len(train) == 57_723 and elapsed < 10
    assert len(VG150Dataset(files, split="val", load_images=False)) == 5_000
    files = _write_vg150_sized(tmp_path / "bad", test_flags=26_445)
    with pytest.raises(VG150Error, match="train split has 57724 images, expected 57723"):
        VG150Dataset(files, split="train", load_images=False)
    assert len(VG150Dataset(files, split="train", val_size=10, load_images=False)) == 62_714


def test_dataset_numbering_images_through_the_skipped_vg_ids_loads(tmp_path):
    # SynthVG numbers images 1..N, so a dataset of 1592+ images holds the id 1592.
    import torch

    from basgg.data import VG150Files, Vocabulary, write_vg150
    from basgg.structures import SceneGraph

    graphs = [
        SceneGraph(
            boxes=torch.tensor([[0.0, 0, 8, 8], [4, 4, 12, 12]]),
            labels=torch.tensor([1, 2]),
            relation_pairs=torch.tensor([[0, 1]]),
            predicates=torch.tensor([1]),
            image_size=(16, 16),
            image_id=image_id,
        )
        for image_id in (1591, 1592, 1593)
    ]
    files = VG150Files(tmp_path)
    write_vg150(files, graphs, [0, 0, 2], Vocabulary.vg150())
    train = VG150Dataset(files, split="train", val_size=0, load_images=False)
    assert train.image_ids == [1591, 1592]
