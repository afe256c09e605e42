"""The damage domain's tables."""
from echelon.catalog.table import Table

# The scores' damage_type values (besides "none"): what the world renders and the model names.
DAMAGE_TYPES = ["crush", "tear", "hole", "deconstruction", "spill", "broken_set"]

SCORES = Table("published", "damage", "damage_scores", suite="damage_scores",
               columns=("batch_id", "image_id", "item_id", "score_supervised", "score_anomaly", "score", "decision",
                        "damage_type", "model_version"))
MANIFESTS = Table("raw", "damage", "batch_manifests", suite="damage_manifest")  # gated per batch, before scoring
