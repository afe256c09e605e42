"""The statistical models' backtest, all windows at once vs one refit per window, side by side.

`StatsForecaster.backtest_forecasts` (which backtest.py uses when a model has it, as for LightGBM)
fits each series once at the oldest origin, calibrates its intervals once, and carries both forward
to the later origins; without it backtest.py fits and calibrates a fresh copy per window. Same data,
same machine, same load, one after the other: the store-item sample (every complete series, last two
years, daily), horizon 28, 4 origins half a horizon apart (auto's backtest).

    python benchmarks/demand_frequencies_backtest_speed.py --out benchmarks/results
"""
from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from echelon.models.demand.backtest import backtest
from echelon.models.demand.forecast import STATS, backtest_stride, build_forecaster

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demand_frequencies import DATA  # noqa: E402  (one place for the data path)

HORIZON, WINDOWS = 28, 4


class PerWindow:
    """A forecaster seen without its backtest_forecasts, so backtest.py refits it per window."""

    def __init__(self, model):
        self.model, self.name = model, model.name

    def fit(self, *args, **kwargs):
        self.model.fit(*args, **kwargs)
        return self

    def predict(self, *args, **kwargs):
        return self.model.predict(*args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    logging.basicConfig(level="WARNING")
    from demand_accuracy import load_store_item

    data = load_store_item(DATA)
    data = data[data["timestamp"] > data["timestamp"].max() - pd.Timedelta(days=730)]
    n_series = data.groupby(["item_id", "location_id"]).ngroups
    uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()  # noqa: E731
    load_before, rows = uptime(), []
    for name in STATS:
        row = {"model": name}
        for label, wrap in (("all windows at once", lambda m: m), ("refit per window", PerWindow)):
            started = time.perf_counter()
            result = backtest(wrap(build_forecaster(name)), data, HORIZON, n_windows=WINDOWS, freq="D",
                              step=backtest_stride(HORIZON))
            row[f"{label} (s)"] = round(time.perf_counter() - started, 1)
            row[f"{label} wQL"] = round(float(result.overall["wql"].iloc[0]), 4)
        row["speedup"] = round(row["refit per window (s)"] / row["all windows at once (s)"], 1)
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    lines = ["# Statistical backtest: all windows at once vs a refit per window", "",
             __doc__.split("\n\n")[1].replace("\n", " "), "",
             f"{n_series} daily series, {len(data)} rows, horizon {HORIZON}, {WINDOWS} windows. "
             f"Load (uptime) before: `{load_before}`; after: `{uptime()}` (2 shared cores: ratios only).", "",
             "| model | all windows at once (s) | refit per window (s) | speedup | wQL at once | wQL per window |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['all windows at once (s)']} | {r['refit per window (s)']} | {r['speedup']}x | "
              f"{r['all windows at once wQL']} | {r['refit per window wQL']} |" for r in rows]
    lines += ["", f"All four together: {table['all windows at once (s)'].sum():.0f} s at once vs "
                  f"{table['refit per window (s)'].sum():.0f} s per window.", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "demand_frequencies_backtest_speed.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
