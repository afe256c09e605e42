"""The damage domain's tables."""
from echelon.catalog.table import Table

SCORES = Table("published", "damage", "damage_scores", suite="damage_scores",
               columns=("batch_id", "image_id", "item_id", "score_supervised", "score_anomaly", "score", "decision",
                        "damage_type", "model_version"))
MANIFESTS = Table("raw", "damage", "batch_manifests", suite="damage_manifest")  # gated per batch, before scoring
