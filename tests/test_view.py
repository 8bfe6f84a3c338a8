"""``basgg view``: triplet outcomes agree with the evaluator; the site's data; headless Chromium.

The dataset is tiny and hand-made; its "cat" class is named with HTML markup so every page
shows that labels are escaped. Browser checks run Debian's ``chromium`` (``--dump-dom``) and
skip when it is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import replace
from html import unescape
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from basgg.cli import main
from basgg.data.vg150_format import VG150Files, write_vg150
from basgg.data.vocabulary import BACKGROUND, Vocabulary
from basgg.evaluation import SGEvaluator, rank_relations, write_predictions
from basgg.evaluation.outcomes import MATCHED, RIGHT_PAIR, UNMATCHED, triplet_outcomes
from basgg.structures import Mode, SceneGraph

EVIL = "<img src=x onerror=document.body.setAttribute('data-pwned','1')>"
VOCABULARY = Vocabulary((BACKGROUND, EVIL, "dog", "man"), (BACKGROUND, "has", "near", "on"))
HAS, NEAR, ON = 1, 2, 3
CAT, DOG, MAN = 1, 2, 3
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (Debian: apt-get install chromium)",
)


def scene(image_id: int, labels, relations) -> SceneGraph:
    """Disjoint boxes on the 1024 grid of a 1024 x 768 image (they read back exactly)."""
    boxes = [[100.0 * i, 50.0, 100.0 * i + 80, 150.0] for i in range(len(labels))]
    return SceneGraph(
        boxes=torch.tensor(boxes),
        labels=torch.tensor(labels, dtype=torch.int64),
        relation_pairs=torch.tensor([r[:2] for r in relations], dtype=torch.int64).reshape(-1, 2),
        predicates=torch.tensor([r[2] for r in relations], dtype=torch.int64),
        image_size=(768, 1024),
        image_id=image_id,
    )


TRAIN = [scene(1, [MAN, DOG], [(0, 1, HAS)]), scene(2, [MAN, CAT], [(0, 1, HAS)])]
TEST = [
    scene(3, [MAN, DOG, CAT], [(0, 1, HAS), (0, 1, NEAR), (2, 0, ON)]),
    scene(4, [DOG, CAT], [(1, 0, NEAR)]),
]


def prediction(gt: SceneGraph, rows: list[tuple[int, int, int, float]]) -> SceneGraph:
    """A predcls prediction whose rows (subject, object, predicate, score) rank as listed."""
    scores = np.full((len(rows), 4), 0.01, np.float32)
    for r, (_, _, predicate, score) in enumerate(rows):
        scores[r, predicate] = score
    graph = replace(
        gt,
        relation_pairs=torch.tensor([r[:2] for r in rows], dtype=torch.int64),
        predicates=torch.tensor([r[2] for r in rows], dtype=torch.int64),
        object_scores=torch.ones(gt.num_objects),
        predicate_scores=torch.from_numpy(scores),
    )
    return rank_relations(graph)


# image 3: has matches GT 0; near on (2, 0) is the right pair of GT 2 (on); on (1, 0) is wrong.
# image 4: 20 self-pair rows first, so GT 0 (cat near dog) is hit by row 21: recalled at 50.
HAND = [
    prediction(TEST[0], [(0, 1, HAS, 0.9), (2, 0, NEAR, 0.8), (1, 0, ON, 0.7)]),
    prediction(TEST[1], [(0, 0, HAS, 0.95 - 0.01 * i) for i in range(20)] + [(1, 0, NEAR, 0.5)]),
]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "vg150"
    files = VG150Files(root)
    write_vg150(files, TRAIN + TEST, [0, 0, 2, 2], VOCABULARY)
    files.image_dir_path.mkdir()
    for graph in TRAIN + TEST:
        Image.new("RGB", (1024, 768), (90, 140, 200)).save(files.image_path(graph.image_id))
    return root


def write(path: Path, predictions: list[SceneGraph]) -> Path:
    write_predictions(
        path,
        predictions,
        mode="predcls",
        predicate_names=VOCABULARY.predicates,
        split="test",
        val_size=0,
    )
    return path


def test_outcomes_of_the_hand_case_and_the_evaluator_agree() -> None:
    outcomes = triplet_outcomes(TEST, HAND, mode=Mode.PREDCLS, num_predicates=4, top=20)
    first = outcomes[0]
    assert first.gt_first_hit.tolist() == [0, -1, -1]
    assert first.row_status.tolist() == [MATCHED, RIGHT_PAIR, UNMATCHED]
    assert first.row_gt.tolist() == [0, 2, -1]
    assert first.row_predicates.tolist() == [HAS, NEAR, ON]
    second = outcomes[1]
    assert second.gt_first_hit.tolist() == [20]  # recalled at 50 and 100, not at 20
    assert second.row_status.tolist() == [UNMATCHED] * 20  # only the top 20 get a status
    evaluator = SGEvaluator(mode=Mode.PREDCLS, num_predicates=4, ks=(20, 50, 100))
    evaluator.update(TEST, HAND)
    assert evaluator.compute().per_image["hits"].tolist() == [[1, 1, 1], [0, 1, 1]]


def test_outcomes_agree_with_the_evaluator_on_random_sgdet_images() -> None:
    generator = torch.Generator().manual_seed(0)
    ground_truths, predictions = [], []
    for image in range(30):
        n = 6
        corners = torch.rand(n, 2, generator=generator) * 200
        boxes = torch.cat([corners, corners + 40], dim=1)
        labels = torch.randint(1, 4, (n,), generator=generator)
        pairs = torch.randint(0, n, (8, 2), generator=generator)
        gt = SceneGraph(boxes, labels, pairs, torch.randint(1, 4, (8,), generator=generator),
                        (300, 300), image_id=image)  # fmt: skip
        detected = torch.cat([boxes, boxes[:3] + 3]) + torch.rand(n + 3, 4, generator=generator)
        rows = torch.randint(0, n + 3, (60, 2), generator=generator)
        scores = torch.rand(60, 4, generator=generator)
        ground_truths.append(gt)
        predictions.append(
            rank_relations(
                SceneGraph(
                    boxes=detected,
                    labels=torch.cat([labels, labels[:3]]),
                    relation_pairs=rows,
                    predicates=scores[:, 1:].argmax(1) + 1,
                    image_size=(300, 300),
                    image_id=image,
                    object_scores=torch.rand(n + 3, generator=generator),
                    predicate_scores=scores,
                )
            )
        )
    ks = (5, 10, 20)
    outcomes = triplet_outcomes(
        ground_truths, predictions, mode=Mode.SGDET, num_predicates=4, k_max=20, top=10
    )
    evaluator = SGEvaluator(mode=Mode.SGDET, num_predicates=4, ks=ks)
    evaluator.update(ground_truths, predictions)
    hits = evaluator.compute().per_image["hits"]
    mine = [[int(((o.gt_first_hit >= 0) & (o.gt_first_hit < k)).sum()) for k in ks]
            for o in outcomes]  # fmt: skip
    assert mine == hits.tolist() and hits.sum() > 0
    for outcome in outcomes:  # a matched row is the first hit of its GT row, or a later one
        matched = outcome.row_gt[outcome.row_status == MATCHED]
        assert (outcome.gt_first_hit[matched] >= 0).all()


def read_data(path: Path) -> object:
    """The value a ``BASGG.put(key, value);`` data script holds."""
    text = path.read_text(encoding="utf-8")
    match = re.fullmatch(r'BASGG\.put\("[\w-]+",(.*)\);\n', text, flags=re.S)
    assert match, path
    return json.loads(match.group(1))


def build_site(tmp_path: Path, dataset: Path, capsys) -> Path:
    first = write(tmp_path / "a" / "inference" / "test" / "predictions.h5", HAND)
    other = write(tmp_path / "b.h5", [prediction(g, [(0, 1, HAS, 0.9)]) for g in TEST])
    site = tmp_path / "site"
    command = ["view", str(first), "--data", str(dataset), "--compare", str(other),
               "--out", str(site), "--workers", "1"]  # fmt: skip
    assert main(command) == 0
    assert f"site: {site / 'index.html'} (2 images, 2 new thumbnails" in capsys.readouterr().out
    return site


def test_view_writes_the_site_data(tmp_path: Path, dataset: Path, capsys) -> None:
    site = build_site(tmp_path, dataset, capsys)
    summary = read_data(site / "data" / "summary.js")
    assert [m["name"] for m in summary["models"]] == ["a", "b"]
    assert summary["models"][0]["metrics"]["R@20"] == pytest.approx((1 / 3 + 0) / 2)
    assert summary["models"][0]["metrics"]["R@50"] == pytest.approx((1 / 3 + 1) / 2)
    assert summary["objects"][CAT] == EVIL and summary["num_images"] == 2
    rows = read_data(site / "data" / "index-0000.js")
    assert [(r["name"], r["n"], r["h"]) for r in rows] == [
        ("3", 3, [[1, 1, 1], [1, 1, 1]]),
        ("4", 1, [[0, 1, 1], [0, 0, 0]]),
    ]
    assert rows[0]["p"] == [HAS, NEAR, ON] and rows[1]["c"] == [CAT, DOG]
    records = read_data(site / "data" / "pages" / "page-0000.js")
    assert [t[5] for t in records[0]["gt"]] == [[0, 0], [-1, -1], [-1, -1]]
    assert [r[4] for r in records[0]["models"][0]["rows"]] == [MATCHED, RIGHT_PAIR, UNMATCHED]
    assert records[1]["gt"][0][5] == [20, -1] and len(records[1]["models"][0]["rows"]) == 20
    image = Path(site, records[0]["src"]).resolve()
    assert image == (dataset / "VG_100K" / "3.jpg").resolve()
    assert len(list((site / "thumbs").glob("*.jpg"))) == 2
    assert main(["view", str(tmp_path / "b.h5"), "--data", str(dataset), "--out", str(site)]) == 0
    assert "0 new thumbnails" in capsys.readouterr().out  # made once
    assert not list(site.rglob("*.tmp"))


def test_view_rejects_a_file_of_another_dataset(tmp_path: Path, dataset: Path, capsys) -> None:
    path = write(tmp_path / "bad.h5", [HAND[0]])
    assert main(["view", str(path), "--data", str(dataset)]) == 2
    assert "bad.h5: 1 images but the dataset split has 2" in capsys.readouterr().err
    swapped = write(tmp_path / "swapped.h5", HAND[::-1])
    assert main(["eval", str(swapped), "--data", str(dataset), "--val-size", "0"]) == 2
    message = capsys.readouterr().err.split("error: ")[1]
    assert main(["view", str(swapped), "--data", str(dataset)]) == 2
    assert capsys.readouterr().err.split("error: ")[1] == message  # as basgg eval says it
    assert main(["view", str(path)]) == 2
    assert "--data DIR is needed" in capsys.readouterr().err


def predict_folder(tmp_path: Path) -> Path:
    """A ``basgg predict`` output folder whose image file name and labels carry markup."""
    folder = tmp_path / "graphs"
    folder.mkdir()
    image = tmp_path / "<script>alert(1)<.png"  # no "/" in a file name
    Image.new("RGB", (64, 48), (10, 200, 30)).save(image)
    record = {
        "image": str(image), "width": 64, "height": 48, "mode": "sgdet", "checkpoint": "x.pth",
        "objects": [
            {"index": 0, "label": EVIL, "score": 0.9, "box": [1, 2, 30, 40]},
            {"index": 1, "label": "dog", "score": 0.8, "box": [20, 5, 60, 45]},
        ],
        "relations": [{"subject": 0, "predicate": "<b>on</b>", "object": 1, "score": 0.5,
                       "subject_label": EVIL, "object_label": "dog"}],
    }  # fmt: skip
    (folder / "x.json").write_text(json.dumps(record))
    summary = {"mode": "sgdet", "checkpoint": "x.pth",
               "images": [{"image": str(image), "json": str(folder / "x.json")}]}  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_view_of_a_predict_folder(tmp_path: Path, capsys) -> None:
    folder = predict_folder(tmp_path)
    assert main(["view", str(folder)]) == 0
    records = read_data(folder / "site" / "data" / "pages" / "page-0000.js")
    assert records[0]["name"] == "<script>alert(1)<.png"
    summary = read_data(folder / "site" / "data" / "summary.js")
    assert summary["predicates"] == [BACKGROUND, "<b>on</b>"] and summary["kind"] == "predict"
    assert "%3Cscript%3E" in records[0]["src"]


def browse(url: str, tmp_path: Path) -> tuple[str, list[str]]:
    """The DOM of ``url`` after its scripts ran, and the console messages (none expected)."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert 'data-ready="1"' in result.stdout, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    return result.stdout, console


def texts(dom: str, pattern: str) -> list[str]:
    """The text of each match of ``pattern``'s first group, tags stripped."""
    return [unescape(re.sub(r"<[^>]+>", " ", m)).split() for m in re.findall(pattern, dom, re.S)]


@needs_browser
def test_site_in_headless_chromium(tmp_path: Path, dataset: Path, capsys) -> None:
    site = build_site(tmp_path, dataset, capsys)
    index = (site / "index.html").resolve().as_uri()
    dom, console = browse(index, tmp_path)
    assert console == []
    assert dom.count('class="card"') == 2 and 'data-count="2"' in dom
    assert 'data-pwned="1"' not in dom and "&lt;img src=x" in dom  # the class name, as text
    dom, console = browse(index + "#missed=1&k=20", tmp_path)  # image 3 misses 2 GT rows at 20
    assert console == [] and 'data-count="2"' in dom
    dom, console = browse(index + f"#object={MAN}", tmp_path)
    assert console == [] and dom.count('class="card"') == 1 and 'data-index="0"' in dom
    dom, console = browse(index + "#missed=1&k=50&model=0", tmp_path)
    assert console == [] and dom.count('class="card"') == 1 and 'data-count="1"' in dom

    page = (site / "image.html").resolve().as_uri() + "?i=0&select=gt-0"  # a pinned triplet
    dom, console = browse(page, tmp_path)
    assert console == [] and 'data-pwned="1"' not in dom
    assert re.findall(r'class="box hl" data-box="([^"]+)"', dom) == ["gt-0", "gt-1"]
    assert re.findall(r'class="edge gt-hit hl"', dom) and 'class="gt-row hl"' in dom
    gt_row = r'<tr class="gt-row[^"]*"[^>]*data-status0="([^"]+)"[^>]*>(.*?)</tr>'
    rows = re.findall(gt_row, dom, re.S)
    seen = [(status, unescape(re.sub(r"<[^>]+>", "|", body))) for status, body in rows]
    assert [status for status, _ in seen] == ["recalled@20", "missed", "missed"]
    assert "|0 man|" in seen[0][1] and "|has|" in seen[0][1] and "|1 dog|" in seen[0][1]
    assert f"|2 {EVIL}|" in seen[2][1] and "|on|" in seen[2][1]
    outcomes = re.findall(r'class="predicted-row"[^>]*data-outcome="(\w+)"', dom)
    assert outcomes == ["match", "pair", "miss", "match"]  # model a's three rows, then b's
    assert "only a" in dom and "only b" in dom

    dom, console = browse((site / "image.html").resolve().as_uri() + "?i=1", tmp_path)
    assert console == []
    assert re.findall(r'data-status0="([^"]+)"', dom) == ["recalled@50"]
    assert "R@50 (#21)" in dom


@needs_browser
def test_predict_folder_site_in_headless_chromium(tmp_path: Path, capsys) -> None:
    folder = predict_folder(tmp_path)
    assert main(["view", str(folder)]) == 0
    dom, console = browse((folder / "site" / "index.html").resolve().as_uri(), tmp_path)
    assert console == [] and dom.count('class="card"') == 1
    dom, console = browse((folder / "site" / "image.html").resolve().as_uri() + "?i=0", tmp_path)
    assert console == [] and 'data-pwned="1"' not in dom
    assert "&lt;script&gt;alert(1)&lt;.png" in dom and "<b>on</b>" not in dom
    assert "<script>alert" not in dom


def test_serve_binds_to_loopback_only(tmp_path: Path) -> None:
    import socket
    import threading

    from basgg.view.serve import make_server

    (tmp_path / "index.html").write_text("<p>site</p>")
    with make_server(tmp_path, 0) as server:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        thread = threading.Thread(target=server.handle_request, daemon=True)
        thread.start()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
            reply = b"".join(iter(lambda: connection.recv(4096), b""))
        thread.join(10)
    assert reply.startswith(b"HTTP/1.0 200") and reply.endswith(b"<p>site</p>")
