"""Bad input: every broken image is quarantined with its reason while the rest of the batch is scored
(the session's tiny model, `tiny` in models/damage/steps.py); a manifest without the needed columns fails the gate
clearly. At the level of the lake (a re-scored batch replaces its rows and keeps the other batches of its
day, a failed publish loses nothing already published): tests/dag/test_damage_e2e.py, on the partition
its DAG run published."""
import shutil
import struct
import zlib

import pandas as pd
import pytest
from PIL import Image

from echelon.models.damage import images as im
from echelon.models.damage import model as md
from echelon.models.damage import steps


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    yield from steps.tiny_one_thread(tmp_path_factory.getbasetemp())


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height RGB pixels, followed by a few bytes of pixel data: what an
    over-large upload or a decompression bomb looks like before anything is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


@pytest.fixture
def bad_batch(tiny, tmp_path):
    """A batch folder: three good images and one of every kind of bad row."""
    world_dir, _ = tiny
    folder = tmp_path / "batch"
    (folder / "img").mkdir(parents=True)
    gallery = pd.read_csv(world_dir / "gallery.csv")
    good = gallery.groupby("item_id").head(1).head(3)
    rows = []
    for k, row in enumerate(good.itertuples()):
        shutil.copy(world_dir / row.path, folder / "img" / f"ok{k}.png")
        rows.append((f"ok{k}", f"img/ok{k}.png", row.item_id))
    item = good.iloc[0]["item_id"]
    source = (world_dir / good.iloc[0]["path"]).read_bytes()
    (folder / "img" / "zero.png").write_bytes(b"")
    (folder / "img" / "truncated.png").write_bytes(source[: len(source) // 2])
    scrambled = bytearray(source)
    for i in range(100, len(source) - 20):   # header intact, compressed pixel data scrambled
        scrambled[i] ^= 0x55
    (folder / "img" / "corrupt.png").write_bytes(bytes(scrambled))
    (folder / "img" / "notes.png").write_text("these are not pixels")
    Image.new("CMYK", (64, 64)).save(folder / "img" / "cmyk.jpg")
    Image.new("RGB", (12, 12)).save(folder / "img" / "tiny.png")
    (folder / "img" / "bomb.png").write_bytes(png_header(40000, 40000))     # beyond PIL's own bomb guard
    (folder / "img" / "huge.png").write_bytes(png_header(10000, 10000))     # under PIL's guard, over ours
    shutil.copy(world_dir / good.iloc[0]["path"], tmp_path / "outside.png")
    rows += [("zero", "img/zero.png", item), ("truncated", "img/truncated.png", item),
             ("corrupt", "img/corrupt.png", item), ("notes", "img/notes.png", item), ("cmyk", "img/cmyk.jpg", item),
             ("tiny", "img/tiny.png", item), ("escape", "../outside.png", item), ("gone", "img/missing.png", item),
             ("bomb", "img/bomb.png", item), ("huge", "img/huge.png", item),
             ("stranger", "img/ok0.png", "NO-SUCH-ITEM"), ("twin", "img/ok1.png", item), ("twin", "img/ok2.png", item)]
    manifest = pd.DataFrame(rows, columns=["image_id", "path", "item_id"])
    manifest.to_csv(folder / "manifest.csv", index=False)
    return folder / "manifest.csv"


EXPECTED = {"zero": "zero-byte", "truncated": "corrupt or truncated", "corrupt": "corrupt or truncated",
            "notes": "not an image", "cmyk": "colour mode CMYK", "tiny": "too small", "bomb": "too large", "huge": "declares 10000x10000",
            "escape": "outside the batch folder",
            "gone": "missing file", "stranger": "unknown item_id", "twin": "duplicate image_id"}


def test_each_bad_image_is_quarantined_with_its_reason_and_the_rest_is_scored(tiny, bad_batch):
    _, model_dir = tiny
    model = md.DamageModel.load(model_dir)
    scores, quarantined, _, _ = md.score_batch(model, im.read_manifest(bad_batch))
    assert sorted(scores["image_id"]) == ["ok0", "ok1", "ok2"]
    reasons = quarantined.groupby("image_id")["reason"].first().to_dict()
    assert set(reasons) == set(EXPECTED)
    for image_id, fragment in EXPECTED.items():
        assert fragment in reasons[image_id], (image_id, reasons[image_id])
    assert len(quarantined[quarantined["image_id"] == "twin"]) == 2   # both rows, neither picked silently


def test_a_manifest_without_the_needed_columns_is_refused(tmp_path, spark):
    from echelon.expectations.gate import GateFailed

    path = tmp_path / "manifest.csv"
    pd.DataFrame({"image_id": ["a"], "file": ["a.png"]}).to_csv(path, index=False)
    with pytest.raises(im.ManifestError, match=r"missing columns \['path', 'item_id'\]"):
        im.read_manifest(path)
    with pytest.raises(GateFailed, match=r"damage_manifest.*ds=2026-11-20.*missing columns \['item_id', 'path'\]"):
        steps.gate_manifest(steps.batch_info("2026-11-20", "b1", str(path)))


def test_labelled_manifests_need_labels(tmp_path):
    path = tmp_path / "m.csv"
    pd.DataFrame({"image_id": ["a"], "path": ["a.png"], "item_id": ["P1"]}).to_csv(path, index=False)
    with pytest.raises(im.ManifestError, match=r"missing columns \['label', 'damage_type'\]"):
        im.read_manifest(path, labelled=True)
