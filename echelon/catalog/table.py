"""What a table is: (layer, domain, name), plus what the catalog says of it. Kept free of pandas so the
DAG files, which only name tables and their Assets, stay light to import."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from echelon.settings import get_settings


@dataclass(frozen=True)
class Table:
    """A lake table. Each is declared once, in its domain's catalog module (echelon/catalog/); the fields
    after `name` describe it and take no part in equality, so a table is its (layer, domain, name)."""
    layer: str    # source | raw | features | published | reference
    domain: str   # demand | network | placement | capacity | damage | callouts
    name: str
    suite: str | None = field(default=None, compare=False)        # its GX gate, expectations/suites/<suite>.json
    columns: tuple[str, ...] = field(default=(), compare=False)   # the contract other domains may rely on
    partitioning: str = field(default="ds", compare=False)        # the partition key (folder ds=YYYY-MM-DD)

    @property
    def asset_uri(self) -> str:
        """The URI of the Airflow Asset that announces a new partition of this table."""
        return f"echelon://{self}"

    def asset(self):
        """The table's Airflow Asset (airflow.sdk imported only by the DAG files that ask for it)."""
        from airflow.sdk import Asset

        return Asset(self.asset_uri)

    def root(self, lake: Path | None = None) -> Path:
        return (lake or get_settings().lake) / self.layer / self.domain / self.name

    def partition(self, ds: str, lake: Path | None = None) -> Path:
        from echelon.lake import parse_ds

        return self.root(lake) / f"ds={parse_ds(ds)}"

    def __str__(self) -> str:
        return f"{self.layer}/{self.domain}/{self.name}"
