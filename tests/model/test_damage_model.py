"""Training smoke test on a tiny world, the console commands' formats, and the check that damage-like
artwork and packaging redesigns are not sidelined above the target rate."""
import numpy as np
import pandas as pd
import pytest

from echelon.cli import main as echelon
from echelon.models.damage import images as im
from echelon.models.damage import model as md
from echelon.jobs.damage import world


def test_training_meets_the_target_rate_on_validation_and_round_trips(tiny, tmp_path):
    world_dir, model_dir = tiny
    model = md.DamageModel.load(model_dir)
    op = model.operating
    assert op.rule == "bounded" and op.fpr <= op.target_fpr and op.false_positives == 0
    assert op.fpr_upper > op.target_fpr          # 300 validation images cannot support 0.1%: reported, not hidden
    assert not op.bound_met and op.needed_negatives > op.negatives
    valid = im.read_manifest(world_dir / "valid.csv", labelled=True)
    rows, _ = im.validate(valid, known_items=set(model.galleries))
    scored = model.score_files(rows)
    negatives = scored["score"][rows["label"] == 0]
    assert (negatives > op.threshold).mean() <= op.target_fpr
    assert scored.loc[rows["label"] == 1, "score"].mean() > negatives.mean()
    again = md.DamageModel.load(model.save(tmp_path / "copy")).score_files(rows)
    assert np.allclose(again["score"], scored["score"], atol=1e-4)
    sidelined = scored[scored["decision"] == "sideline"]
    assert set(sidelined["damage_type"]) <= set(world.DAMAGE_TYPES)
    assert (scored.loc[scored["decision"] == "pass", "damage_type"] == "none").all()


def test_console_train_and_score_write_the_documented_formats(tiny, tmp_path, capsys):
    world_dir, _ = tiny
    out = tmp_path / "model"
    assert echelon(["damage", "train", "--train", str(world_dir / "calib.csv"), "--gallery", str(world_dir / "gallery.csv"),
                    "--output", str(out), "--epochs", "1"]) == 0
    assert "95% upper bound" in capsys.readouterr().out
    assert echelon(["damage", "score", "--model", str(out), "--batch", str(world_dir / "batch.csv"),
                    "--output", str(tmp_path / "scores.csv"), "--no-refresh"]) == 0
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == ["image_id", "score", "decision", "damage_type"]
    assert len(scores) == len(pd.read_csv(world_dir / "batch.csv"))
    assert scores["score"].between(0, 1).all() and set(scores["decision"]) <= {"pass", "sideline"}
    _, model_dir = tiny                                      # the tiny model sidelines part of the validation set
    assert echelon(["damage", "score", "--model", str(model_dir), "--batch", str(world_dir / "valid.csv"),
                    "--output", str(tmp_path / "tiny.csv"), "--no-refresh"]) == 0
    scores = pd.read_csv(tmp_path / "tiny.csv", dtype={"image_id": str})
    maps = sorted(p.stem for p in (tmp_path / "tiny.maps").glob("*.png"))   # one anomaly map per sidelined image
    assert maps and maps == sorted(scores.loc[scores["decision"] == "sideline", "image_id"])


def test_the_gallery_anomaly_map_peaks_where_a_defect_was_pasted(tiny, tmp_path):
    from PIL import Image

    from echelon.models.damage import gallery as gl

    world_dir, model_dir = tiny
    model = md.DamageModel.load(model_dir)
    row = pd.read_csv(world_dir / "gallery.csv").iloc[0]
    image = np.asarray(Image.open(world_dir / row["path"]).convert("RGB").resize((64, 64))).copy()
    image[36:48, 12:24] = (255, 0, 255)                             # a magenta stain, 12 px, lower left
    Image.fromarray(image).save(tmp_path / "stained.png")
    amap = gl.anomaly_maps(model.galleries, [row["item_id"]], im.load_many([tmp_path / "stained.png"], 64))[0]
    r, c = np.unravel_index(np.argmax(amap), amap.shape)
    # the grid: 64 px -> pooled 32 -> 6-px patches every 2 -> 14x14; the stain covers pooled rows 18-24, cols 6-12
    assert 6 <= r <= 12 and 1 <= c <= 6, (r, c, amap.round(1))


def test_artwork_and_redesigns_are_not_sidelined_above_the_target_rate(tiny, tmp_path):
    """Pristine damage-like artwork in one batch; every product of the tiny world redesigned at once, two
    batches in a row (the classifier never saw the new designs, some carry cracked-screen or splash
    artwork), judged at the production threshold (the bounded rule)."""
    world_dir, model_dir = tiny
    model = md.DamageModel.load(model_dir)
    assert model.operating.rule == "bounded" and model.operating.target_fpr == 0.001
    catalog = world.make_products(10, seed=7)          # the tiny world's products (steps.TINY, seed 7)
    hazards = [p for p in catalog if p.hazard != "none"]
    assert hazards
    world.write_set(tmp_path, "art", hazards, 0, 0.0, seed=99, per_product=8)
    for name, seed in (("new", 99), ("newer", 100)):
        world.write_set(tmp_path, name, [world.redesign(p) for p in catalog], 0, 0.0, seed=seed, per_product=8)
    art, quarantined, refreshed, held = md.score_batch(model, im.read_manifest(tmp_path / "art.csv"))
    assert len(quarantined) == 0 and not refreshed and not held   # a known design, however damage-like, is no drift
    plain, _, _, _ = md.score_batch(model, im.read_manifest(tmp_path / "new.csv"), refresh=False)
    assert plain["decision"].eq("sideline").mean() > 0.5      # the flood the refresh prevents
    first, _, refreshed, held = md.score_batch(model, im.read_manifest(tmp_path / "new.csv"), batch_id="new")
    first_held = dict(held)
    assert not set(refreshed) & set(held)
    assert len(refreshed) >= len(catalog) // 2       # most new looks are refreshed at once
    quiet = first[first["item_id"].isin(list(refreshed))]
    assert quiet["decision"].eq("sideline").mean() <= model.operating.target_fpr
    # drifts unlike a redesign's wait for a second batch (a damaged shipment would not come again)
    second, _, later, held = md.score_batch(model, im.read_manifest(tmp_path / "newer.csv"), overrides=refreshed,
                                            pending=held, batch_id="newer")
    assert not held and set(later) >= set(first_held)
    scores = pd.concat([art, second])
    rate = (scores["decision"] == "sideline").mean()
    assert rate <= model.operating.target_fpr, scores.sort_values("score").tail(5)


def test_a_mostly_damaged_batch_of_a_product_is_not_taken_for_a_redesign(tiny, tmp_path):
    """A crushed pallet: most of one product's images in a batch damaged. Its median drifts from the
    gallery like a redesign's, but refreshing would make the damage the reference and pass it. Its drift
    is uneven (the undamaged units still match the gallery), unlike a redesign's, so the gallery is held
    and the damage sidelined; a later batch of the product looking as before clears the hold. (The tiny
    model's classifier is too weak here to be the guard: on this batch it gives every image p ~ 0.43.)"""
    world_dir, model_dir = tiny
    model = md.DamageModel.load(model_dir)
    catalog = world.make_products(10, seed=7)
    box = next(p for p in catalog if p.kind == "box" and p.hazard == "none")
    world.write_set(tmp_path, "pallet", [box], 0, 0.85, seed=5, per_product=12)
    world.write_set(tmp_path, "later", [box], 0, 0.0, seed=6, per_product=8)
    manifest = im.read_manifest(tmp_path / "pallet.csv", labelled=True)
    assert manifest["label"].mean() > 0.6
    scores, _, refreshed, held = md.score_batch(model, manifest, batch_id="pallet")
    assert not refreshed and held == {box.item_id: ["pallet"]}
    plain, _, _, _ = md.score_batch(model, manifest, refresh=False)
    assert np.allclose(scores["score"], plain["score"])         # judged against the gallery it had
    rows, _ = im.validate(manifest, known_items=set(model.galleries))
    old, refreshed_old, _ = md.score_rows(model, rows, persist=1)   # the old rule: any drift refreshes at once
    assert list(refreshed_old) == [box.item_id]
    damaged = manifest["label"].to_numpy() == 1
    caught = scores["decision"].eq("sideline").to_numpy()[damaged].mean()
    assert caught > 0.3 and caught >= old["decision"].eq("sideline").to_numpy()[damaged].mean() + 0.2
    # a re-run of the same batch is not a second batch
    _, _, refreshed, again = md.score_batch(model, manifest, pending=held, batch_id="pallet")
    assert not refreshed and again == held
    _, _, refreshed, cleared = md.score_batch(model, im.read_manifest(tmp_path / "later.csv"), pending=held, batch_id="later")
    assert not refreshed and cleared == {}
