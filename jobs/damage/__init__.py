"""Damage's Spark and lake jobs: parallel image scoring and the damage_scores publish."""
