"""Callouts jobs: land the day's logs (synthetic world or real logs) and build matured feedback (Spark)."""
