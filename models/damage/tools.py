"""`echelon damage train|score` on files (without --ds): a model folder trained from manifests, a batch
manifest scored with it (`echelon damage world` is jobs/damage/world.py's own CLI). No lake, no MLflow."""
from __future__ import annotations

from echelon.models.damage.overrides import read_pending, write_pending


def cli_train(args) -> int:
    from echelon.models.damage import images as im
    from echelon.models.damage import model as md

    model, evaluation = md.train(im.read_manifest(args.train, labelled=True), im.read_manifest(args.gallery),
                                 im.read_manifest(args.valid, labelled=True) if args.valid else None,
                                 size=args.size, epochs=args.epochs, seed=args.seed, target_fpr=args.target_fpr,
                                 threshold_rule=args.threshold_rule)
    model.save(args.output)
    op = evaluation["operating"]
    print(f"model saved to {args.output}: {op['rule']} threshold {op['threshold']:.5f}, validation FPR {op['fpr']:.4%} "
          f"(95% upper bound {op['fpr_upper']:.4%} on {op['negatives']} pristine images; {op['needed_negatives']} "
          f"are needed to support {op['target_fpr']:.2%} with zero false positives), recall {op['recall']:.3f}")
    holdback = evaluation["holdback"]
    print(holdback["message"])
    return 0 if holdback["passed"] else 1


def cli_score(args) -> int:
    from echelon.models.damage import images as im
    from echelon.models.damage import maps
    from echelon.models.damage import model as md

    model = md.DamageModel.load(args.model)
    held = args.model / "pending_refresh.json"
    scores, quarantined, refreshed, pending = md.score_batch(model, im.read_manifest(args.batch), refresh=not args.no_refresh,
                                                             pending=read_pending(held), batch_id=str(args.batch.resolve()))
    if not args.no_refresh:
        write_pending(held, pending)
    if pending:
        print(f"galleries NOT refreshed for {sorted(pending)}: they drifted but look damaged to the classifier; "
              f"the gallery follows if the drift lasts {md.PERSIST} batches in a row")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    scores[["image_id", "score", "decision", "damage_type"]].to_csv(args.output, index=False)
    written = maps.write_maps(scores, dict(zip(scores["image_id"], scores["file"])), {**model.galleries, **refreshed},
                              model.size, args.output.with_name(args.output.stem + ".maps"))
    if len(written):
        print(f"{len(written)} anomaly maps of sidelined images in {args.output.with_name(args.output.stem + '.maps')}")
    if len(quarantined):
        path = args.output.with_name(args.output.stem + ".quarantine.csv")
        quarantined.to_csv(path, index=False)
        print(f"{len(quarantined)} images quarantined (reasons in {path})")
    if refreshed:
        model.galleries.update(refreshed)
        model.save(args.model)
        print(f"galleries refreshed for {sorted(refreshed)} and saved into {args.model}")
    print(f"{len(scores)} images scored, {int((scores['decision'] == 'sideline').sum())} sidelined -> {args.output}")
    return 0
