"""Placement's Spark jobs: input checks on the published forecasts and the network reference tables."""
