"""Bad VG150 input: each error names the file, the image (h5 row, image_id) and the field.

Object rows of the tiny dataset: row 0 -> 0-1, row 1 -> 2-4, row 3 -> 6-7, row 5 -> 8-10, ...
Relation rows: row 0 -> 0, row 1 -> 1-3, row 3 -> 4, row 5 -> 5-6, row 6 -> 7-8, row 7 -> 9.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from PIL import Image

from basgg.data import VG150Dataset, VG150Error


def load(files, split: str = "train", **options) -> VG150Dataset:
    options.setdefault("load_images", False)
    return VG150Dataset(files, split=split, val_size=1, **options)


def expect_error(files, path, *parts: str, **options) -> None:
    """Construction fails with a VG150Error naming ``path`` and every one of ``parts``."""
    with pytest.raises(VG150Error) as caught:
        load(files, **options)
    message = str(caught.value)
    for part in (str(path), *parts):
        assert part in message, f"{part!r} not in {message!r}"


def test_missing_h5_dataset(write_raw, tmp_path, annotations):
    del annotations["h5"]["predicates"]
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.roidb_path, "'predicates'", "missing")


def test_wrong_shape(write_raw, tmp_path, annotations):
    annotations["h5"]["labels"] = annotations["h5"]["labels"][:, 0]
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.roidb_path, "'labels'", "shape (16,), expected (16, 1)")


def test_wrong_dtype(write_raw, tmp_path, annotations):
    annotations["h5"]["boxes_1024"] = annotations["h5"]["boxes_1024"].astype(np.float32)
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.roidb_path, "'boxes_1024'", "dtype float32")


def test_any_integer_dtype_is_accepted_for_labels_and_predicates(write_raw, tmp_path, annotations):
    annotations["h5"]["labels"] = annotations["h5"]["labels"].astype(np.uint8)
    annotations["h5"]["predicates"] = annotations["h5"]["predicates"].astype(np.int32)
    files = write_raw(tmp_path, annotations, images=False)
    graph = load(files).ground_truth(0)
    assert graph.labels.tolist() == [1, 2, 4] and graph.predicates.tolist() == [2, 3, 1]


def test_first_and_last_index_inconsistent(write_raw, tmp_path, annotations):
    annotations["h5"]["img_to_last_box"][1] = -1
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.roidb_path, "h5 row 1 (image_id 102)", "'img_to_last_box'")


def test_last_index_out_of_range(write_raw, tmp_path, annotations):
    annotations["h5"]["img_to_last_rel"][7] = 10  # there are 10 relation rows
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.roidb_path, "h5 row 7 (image_id 108)", "'img_to_last_rel'", "past")


def test_relation_outside_its_image_boxes(write_raw, tmp_path, annotations):
    annotations["h5"]["relationships"][4] = [6, 8]  # row 3 owns objects 6-7; 8 is row 5's
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.roidb_path, "h5 row 3 (image_id 104)", "'relationships'", "[6, 8]")


def test_box_with_non_positive_size(write_raw, tmp_path, annotations):
    annotations["h5"]["boxes_1024"][9, 3] = 0  # row 5's second box, zero height
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.roidb_path, "h5 row 5 (image_id 106)", "'boxes_1024'", "box row 9")


def test_box_with_negative_centre(write_raw, tmp_path, annotations):
    annotations["h5"]["boxes_1024"][0, 0] = -5
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.roidb_path, "h5 row 0 (image_id 101)", "'boxes_1024'", "box row 0")


def test_image_data_length_disagrees_with_h5(write_raw, tmp_path, annotations):
    del annotations["image_data"][-2:]  # 8 entries (one of them the skipped 1592) for 9 rows
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.image_data_path, "8 entries", "the h5 has 9 images")


def test_image_data_with_one_entry_per_row_may_use_skipped_vg_ids(write_raw, tmp_path, annotations):
    # The skipped VG ids are only dropped when the JSON has more entries than the h5 has
    # rows (real VG150: 108,077 for 108,073); SynthVG numbers its images 1..N.
    del annotations["image_data"][3]  # the 1592 entry: now one entry per h5 row
    annotations["image_data"][1]["image_id"] = 4616  # stands for h5 row 1
    files = write_raw(tmp_path, annotations, images=False)
    data = VG150Dataset(files, split="train", val_size=0, load_images=False)
    assert 4616 in data.image_ids


def test_image_data_entry_without_height(write_raw, tmp_path, annotations):
    del annotations["image_data"][5]["height"]
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.image_data_path, "'height'", "entry 5")


def test_dicts_json_missing_field(write_raw, tmp_path, annotations):
    del annotations["dicts"]["predicate_to_idx"]
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.dict_path, "'predicate_to_idx'", "missing")


def test_label_outside_vocabulary(write_raw, tmp_path, annotations):
    annotations["h5"]["labels"][12, 0] = 5  # 4 object classes; row 6 owns objects 11-12
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.roidb_path, "h5 row 6 (image_id 107)", "'labels'", "1..4")


def test_predicate_outside_vocabulary(write_raw, tmp_path, annotations):
    annotations["h5"]["predicates"][9, 0] = 0
    files = write_raw(tmp_path, annotations, images=False)
    expect_error(files, files.roidb_path, "h5 row 7 (image_id 108)", "'predicates'", "1..3")


def test_h5_that_is_not_an_h5_file(write_raw, tmp_path, annotations):
    files = write_raw(tmp_path, annotations, images=False)
    files.roidb_path.write_bytes(b"not an hdf5 file")
    expect_error(files, files.roidb_path, "cannot read the h5")


def test_image_missing_at_load_time(write_raw, tmp_path, annotations):
    files = write_raw(tmp_path, annotations)
    train = load(files, load_images=True)
    (files.image_dir_path / "102.jpg").unlink()
    with pytest.raises(VG150Error, match=re.escape("h5 row 1 (image_id 102): field 'image'")):
        train[0]
    assert train.ground_truth(0).num_objects == 3  # evaluation targets never load the image


def test_corrupt_image(write_raw, tmp_path, annotations):
    files = write_raw(tmp_path, annotations)
    path = files.image_dir_path / "104.jpg"
    path.write_bytes(path.read_bytes()[:200])  # truncated JPEG
    train = load(files, load_images=True)
    with pytest.raises(VG150Error) as caught:
        train[1]
    assert str(path) in str(caught.value) and "h5 row 3 (image_id 104)" in str(caught.value)


def test_image_size_differing_from_json_warns_once_and_keeps_json_size(
    write_raw, tmp_path, annotations
):
    files = write_raw(tmp_path, annotations)
    Image.new("RGB", (400, 300)).save(files.image_dir_path / "101.jpg")
    val = load(files, "val", load_images=True)
    with pytest.warns(UserWarning, match="400x300 but image_data.json says 800x600") as caught:
        image, graph = val[0]
    assert len([w for w in caught if "101.jpg" in str(w.message)]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        val[0]  # second load: no warning
    assert image.shape == (3, 300, 400)
    assert graph.image_size == (600, 800) and graph.boxes.tolist()[0] == [100, 50, 300, 150]
