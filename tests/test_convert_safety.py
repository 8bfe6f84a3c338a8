"""``basgg data convert`` never reads from, writes into or deletes anything in the source
images, reads only inside ``--images`` unless told, and gives clean errors for hostile JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from basgg.cli import main


def _photo(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")
    return path.read_bytes()


def _annotations(path: Path, names: list[str], **extra) -> Path:
    images = [
        {
            "file_name": name,
            "width": 40,
            "height": 30,
            "split": "train" if index else "test",
            "objects": [
                {"name": "dog", "box": [1, 1, 20, 20]},
                {"name": "man", "box": [5, 5, 30, 25]},
            ],
            "relationships": [{"subject": 1, "predicate": "near", "object": 0}],
            **extra,
        }
        for index, name in enumerate(names)
    ]
    path.write_text(json.dumps({"images": images}))
    return path


def _convert(*argv: str) -> int:
    return main(["data", "convert", *argv])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_images_inside_out_are_never_overwritten_or_deleted(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The reported setup: ``--images d/VG_100K --out d``, listed in another order than
    their names (so image 1 would be written from ``2.jpg``), then ``--overwrite``."""
    d = tmp_path / "d"
    photos = d / "VG_100K"
    _photo(photos / "1.jpg", (255, 0, 0))
    _photo(photos / "2.jpg", (0, 0, 255))
    _photo(photos / "holiday.jpg", (0, 255, 0))  # an unrelated file in that folder
    before = _snapshot(photos)
    source = _annotations(tmp_path / "a.json", ["2.jpg", "1.jpg"])
    for extra in ([], ["--overwrite"], ["--link-images", "--overwrite"]):
        assert _convert(str(source), "--images", str(photos), "--out", str(d), *extra) == 2
        assert "overlap" in capsys.readouterr().err
        assert _snapshot(photos) == before
    assert sorted(p.name for p in d.iterdir()) == ["VG_100K"]


def test_out_inside_images_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    photos = tmp_path / "photos"
    _photo(photos / "a.jpg", (1, 2, 3))
    source = _annotations(tmp_path / "a.json", ["a.jpg"])
    assert _convert(str(source), "--images", str(photos), "--out", str(photos / "vg")) == 2
    assert f"--images {photos} and --out {photos / 'vg'} overlap" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == ["a.jpg"]


@pytest.mark.parametrize("kind", ["parent", "absolute", "link"])
def test_paths_outside_images_are_refused_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture, kind: str
) -> None:
    photos = tmp_path / "photos"
    _photo(photos / "a.jpg", (1, 2, 3))
    secret = tmp_path / "private" / "x.jpg"
    _photo(secret, (9, 9, 9))
    name = {"parent": "../private/x.jpg", "absolute": str(secret), "link": "inside.jpg"}[kind]
    if kind == "link":
        os.symlink(secret, photos / "inside.jpg")
    source = _annotations(tmp_path / "a.json", ["a.jpg", name])
    out = tmp_path / "out"
    assert _convert(str(source), "--images", str(photos), "--out", str(out)) == 2
    error = capsys.readouterr().err
    assert "image 1" in error and "lies outside the image folder" in error
    assert "--allow-outside-images" in error and not out.exists()
    argv = ["--images", str(photos), "--out", str(out), "--allow-outside-images"]
    assert _convert(str(source), *argv) == 0
    assert "note: 1 image(s) read from outside --images" in capsys.readouterr().out


def test_path_spellings_are_normalised_before_duplicates_are_detected(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    photos = tmp_path / "photos"
    _photo(photos / "a.jpg", (1, 2, 3))
    (photos / "sub").mkdir()
    for names in (["a.jpg", "./a.jpg"], ["a.jpg", "sub/../a.jpg"]):
        source = _annotations(tmp_path / "a.json", names)
        assert _convert(str(source), "--images", str(photos), "--out", str(tmp_path / "o")) == 2
        assert "'a.jpg' repeats the file_name of image 0" in capsys.readouterr().err


def test_image_ids_above_the_int64_range_are_refused_at_convert(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    photos = tmp_path / "photos"
    _photo(photos / "a.jpg", (1, 2, 3))
    source = _annotations(tmp_path / "a.json", ["a.jpg"], image_id=2**63)
    assert _convert(str(source), "--images", str(photos), "--out", str(tmp_path / "o")) == 2
    expected = "'image_id': 9223372036854775808 is not a non-negative integer below 2**63"
    assert expected in capsys.readouterr().err
    largest = _annotations(tmp_path / "b.json", ["a.jpg"], image_id=2**63 - 1)
    assert _convert(str(largest), "--images", str(photos), "--out", str(tmp_path / "o")) == 0
    exported = tmp_path / "e.json"
    assert main(["data", "export", str(tmp_path / "o"), "--out", str(exported)]) == 0
    assert json.loads(exported.read_text())["images"][0]["image_id"] == 2**63 - 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
        ('{"images": [{"file_name": "a.jpg", "width": 1' + "0" * 5000 + "}]}", "digits"),
        ('{"images": [{"file_name": "a.jpg", "width": 1' + "0" * 40 + "}]}", "below 2**31"),
    ],
    ids=["deep", "huge-int", "big-int"],
)
def test_hostile_json_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture, text: str, expected: str
) -> None:
    source = tmp_path / "a.json"
    source.write_text(text)
    photos = tmp_path / "photos"
    photos.mkdir()
    assert _convert(str(source), "--images", str(photos), "--out", str(tmp_path / "o")) == 2
    error = capsys.readouterr().err
    assert str(source) in error and expected in error and "Traceback" not in error


def test_export_into_a_missing_folder_creates_it(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    _photo(photos / "a.jpg", (1, 2, 3))
    source = _annotations(tmp_path / "a.json", ["a.jpg"])
    assert _convert(str(source), "--images", str(photos), "--out", str(tmp_path / "o")) == 0
    target = tmp_path / "new" / "folder" / "a.json"
    assert main(["data", "export", str(tmp_path / "o"), "--out", str(target)]) == 0
    assert json.loads(target.read_text())["images"][0]["file_name"] == "a.jpg"


def test_overwrite_removes_only_images_basgg_wrote(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for index in range(3):
        _photo(photos / f"{index}.jpg", (index, 0, 0))
    out = tmp_path / "o"
    source = _annotations(tmp_path / "a.json", ["0.jpg", "1.jpg", "2.jpg"])
    assert _convert(str(source), "--images", str(photos), "--out", str(out)) == 0
    _photo(out / "VG_100K" / "mine.jpg", (7, 7, 7))  # a user's file in the output folder
    smaller = _annotations(tmp_path / "b.json", ["0.jpg"])
    assert _convert(str(smaller), "--images", str(photos), "--out", str(out), "--overwrite") == 0
    assert sorted(p.name for p in (out / "VG_100K").iterdir()) == ["1.jpg", "mine.jpg"]
