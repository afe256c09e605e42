"""Items as the booth sees them (models/damage/items.py), on the session's tiny model: a product recognised
by its nearest gallery when a row has no item_id (an unknown one quarantined), two views of one item fused
so that the view showing the defect sidelines the item, and the bad view lists quarantined with a reason."""
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from echelon.models.damage import images as im
from echelon.models.damage import items
from echelon.models.damage import model as md


@pytest.fixture(scope="module")
def scored_valid(tiny):
    """The world's validation images scored one by one (no units), with their labels."""
    world_dir, model_dir = tiny
    model = md.DamageModel.load(model_dir)
    rows, _ = im.validate(im.read_manifest(world_dir / "valid.csv", labelled=True), known_items=set(model.galleries))
    scores = model.score_files(rows)
    return model, rows.assign(score=scores["score"].to_numpy(), decision=scores["decision"].to_numpy())


def test_a_product_is_recognised_by_its_nearest_gallery_and_an_unknown_one_is_quarantined(scored_valid):
    model, rows = scored_valid
    pristine = rows[(rows["label"].astype(int) == 0) & (rows["hazard"] == "none")]
    sample = pristine.groupby("item_id").head(4).reset_index(drop=True)
    ok, doubtful = items.identify(sample.assign(item_id=""), model.galleries, model.size)
    truth = dict(zip(sample["image_id"], sample["item_id"]))
    assert len(ok) >= 0.7 * len(sample)
    assert (ok["item_id"] == ok["image_id"].map(truth)).all() and ok["recognised"].all()
    assert ok["recognition_confidence"].between(items.MIN_CONFIDENCE, 1).all()
    assert doubtful["reason"].str.contains("no item_id").all()
    unknown = "P0003"
    others = {item: g for item, g in model.galleries.items() if item != unknown}
    stranger = sample[sample["item_id"] == unknown].assign(item_id="")
    accepted, quarantined = items.identify(stranger, others, model.size)
    assert accepted.empty and len(quarantined) == len(stranger)
    assert quarantined["reason"].str.contains("no known product looks like it").all()


def write_units(world_dir, units: dict[str, list[tuple[str, str, str]]], name: str):
    rows = [(image_id, path, item, unit) for unit, views in units.items() for image_id, path, item in views]
    frame = pd.DataFrame(rows, columns=["image_id", "path", "item_id", "unit_id"])
    frame.to_csv(world_dir / name, index=False)
    return im.read_manifest(world_dir / name)


def test_two_views_where_one_shows_the_defect_sideline_the_item(tiny, scored_valid):
    world_dir, _ = tiny
    model, rows = scored_valid
    damaged = rows[(rows["label"].astype(int) == 1) & (rows["decision"] == "sideline")].iloc[0]
    pristine = rows[(rows["item_id"] == damaged["item_id"]) & (rows["label"].astype(int) == 0)
                    & (rows["decision"] == "pass")].iloc[0]
    calm = rows[(rows["item_id"] == damaged["item_id"]) & (rows["label"].astype(int) == 0)
                & (rows["decision"] == "pass")].iloc[1]
    path = lambda r: str(r["file"]).split(str(world_dir) + "/")[1]  # noqa: E731
    manifest = write_units(world_dir, {
        "U-damaged": [("u1-top", path(pristine), damaged["item_id"]), ("u1-side", path(damaged), damaged["item_id"])],
        "U-clean": [("u2-top", path(pristine), damaged["item_id"]), ("u2-side", path(calm), damaged["item_id"])]},
        "units.csv")
    scores, quarantined, _, _ = md.score_batch(model, manifest, refresh=False)
    decision = dict(zip(scores["image_id"], scores["decision"]))
    assert quarantined.empty
    assert decision["u1-top"] == decision["u1-side"] == "sideline"     # the item goes to the associate whole
    assert decision["u2-top"] == decision["u2-side"] == "pass"
    by_id = scores.set_index("image_id")
    assert by_id.loc["u1-top", "damage_type"] == by_id.loc["u1-side", "damage_type"] != "none"
    units = items.fuse_views(scores.assign(score=scores["score"]), model.operating.threshold)
    assert dict(zip(units["unit"], units["worst_view"]))["U-damaged"] == "u1-side"


def test_bad_view_lists_are_quarantined_with_their_reason(tiny, scored_valid):
    world_dir, _ = tiny
    model, rows = scored_valid
    a, b = rows.iloc[0], rows[rows["item_id"] != rows.iloc[0]["item_id"]].iloc[0]
    path = lambda r: str(r["file"]).split(str(world_dir) + "/")[1]  # noqa: E731
    grey = world_dir / "images" / "grey-view.png"
    Image.open(a["file"]).convert("L").save(grey)
    Image.open(a["file"]).resize((400, 64)).save(world_dir / "images" / "strip.png")   # 6.3:1 in a square batch
    manifest = write_units(world_dir, {
        "U-two-products": [("m1", path(a), a["item_id"]), ("m2", path(b), b["item_id"])],
        "U-grey-and-colour": [("g1", path(a), a["item_id"]), ("g2", "images/grey-view.png", a["item_id"])],
        "U-unknown": [("x1", path(a), "NO-SUCH-ITEM")],
        "U-strip": [("s1", "images/strip.png", a["item_id"])],
        "U-fine": [("f1", path(b), b["item_id"])]}, "bad_units.csv")
    scores, quarantined, _, _ = md.score_batch(model, manifest, refresh=False)
    assert list(scores["image_id"]) == ["f1"]
    reasons = dict(zip(quarantined["image_id"], quarantined["reason"]))
    assert "name different products" in reasons["m1"] and "name different products" in reasons["m2"]
    assert "mix greyscale and colour" in reasons["g1"] and "mix greyscale and colour" in reasons["g2"]
    assert "unknown item_id 'NO-SUCH-ITEM'" in reasons["x1"]
    assert "aspect 400x64 (6.2:1) far from the batch's median 1.0:1" in reasons["s1"]
    assert np.isfinite(scores["score"]).all()
