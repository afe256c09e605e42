"""The synthetic shopper world: segments, callouts (with families, launches, retirements and a long tail),
layouts whose four components interact, and clicks that arrive with delay.

Deterministic by seed: the world's truths come from `make_world(seed)`, and a day of traffic from
`simulate_day(world, day, policy, seed)` with a generator seeded by (seed, day). The world is pure numpy so
the simulator (`echelon callouts simulate`) and the nightly pipeline (jobs/callouts/ingest.py in world mode)
share one definition. The layout grid is the serving contract's, in echelon/catalog/callouts.py.

P(click within the attribution window | segment s, callout c, layout l) =
    sigmoid(base + segment[s] + affinity[s, family(c)] + value_coef[s] * value(c) + idio[c] + layout[l])
where layout[l] = sum of the components' main effects + every pairwise interaction between them.
"""
from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from echelon.catalog.callouts import (  # noqa: F401  (the layout grid and attribution window of the contract)
    COMPONENTS, WINDOW_DAYS, all_layouts, layout_id, parse_layout)

SEGMENTS = ["new_visitor", "occasional", "frequent", "student", "family", "business"]
FAMILIES = ["shipping", "video", "music", "grocery", "photos", "reading"]
IMPRESSION_COLUMNS = ["impression_id", "segment", "callout_id", "layout_id", "position", "propensity", "shown_at"]
CLICK_COLUMNS = ["impression_id", "clicked_at"]


@dataclass
class World:
    seed: int
    start: dt.date
    base: float
    segment_effect: dict            # segment -> logit shift
    segment_weight: dict            # segment -> share of traffic
    affinity: pd.DataFrame          # segment x family logit shifts
    value_coef: dict                # segment -> effect of a callout's value attribute
    catalog: pd.DataFrame           # callout_id, family, value, launched_on, retired_on, idio
    main: dict                      # component -> array of main effects
    pair: dict                      # (component, component) -> matrix of interactions

    def active(self, day: dt.date) -> pd.DataFrame:
        """Callouts that can be shown on `day`."""
        c = self.catalog
        return c[(c["launched_on"] <= day) & ((c["retired_on"].isna()) | (c["retired_on"] > day))]

    def layout_effect(self, levels) -> float:
        names = list(COMPONENTS)
        total = sum(self.main[n][levels[i]] for i, n in enumerate(names))
        for (i, a), (j, b) in itertools.combinations(enumerate(names), 2):
            total += self.pair[(a, b)][levels[i], levels[j]]
        return float(total)

    def click_rate(self, segment: str, callout_id: str, layout: str | None = None) -> float:
        c = self.catalog.set_index("callout_id").loc[callout_id]
        logit = (self.base + self.segment_effect[segment] + self.affinity.loc[segment, c["family"]]
                 + self.value_coef[segment] * c["value"] + c["idio"])
        if layout is not None:
            logit += self.layout_effect(parse_layout(layout))
        return float(special.expit(logit))

    def rates(self, day: dt.date, with_layouts: bool = False) -> pd.DataFrame:
        """True click rates of every active (segment, callout[, layout]) on `day`."""
        rows = []
        layouts = all_layouts()["layout_id"] if with_layouts else [None]
        for segment in SEGMENTS:
            for cid in self.active(day)["callout_id"]:
                for lid in layouts:
                    rows.append((segment, cid, lid, self.click_rate(segment, cid, lid)))
        frame = pd.DataFrame(rows, columns=["segment", "callout_id", "layout_id", "rate"])
        return frame if with_layouts else frame.drop(columns="layout_id")


def make_world(seed: int = 42, start: str | dt.date = "2026-10-01", days: int = 120, initial: int = 12,
               launch_every: int = 4, retire_share: float = 0.15, base_rate: float = 0.03) -> World:
    """Draw a world's truths: `initial` callouts (two per family) at `start`, a new one every
    `launch_every` days, a share of them retired later, and a long tail of idiosyncratic effects."""
    rng = np.random.default_rng(seed)
    start = dt.date.fromisoformat(str(start))
    weights = rng.dirichlet(np.full(len(SEGMENTS), 2.0))
    rows = []
    total = initial + days // launch_every
    for k in range(total):
        family = FAMILIES[k % len(FAMILIES)] if k < initial else FAMILIES[rng.integers(len(FAMILIES))]
        launched = start if k < initial else start + dt.timedelta(days=int((k - initial + 1) * launch_every))
        retired = None
        if rng.random() < retire_share:
            retired = launched + dt.timedelta(days=int(rng.integers(10, 60)))
        rows.append({"callout_id": f"c{k:03d}", "family": family, "value": float(rng.uniform(0, 1)),
                     "launched_on": launched, "retired_on": retired,
                     "idio": float(rng.standard_t(4) * 0.3)})   # heavy tail: a few standouts
    catalog = pd.DataFrame(rows)
    names = list(COMPONENTS)
    return World(
        seed=seed, start=start, base=float(special.logit(base_rate)),
        segment_effect={s: float(rng.normal(0, 0.3)) for s in SEGMENTS},
        segment_weight={s: float(w) for s, w in zip(SEGMENTS, weights)},
        affinity=pd.DataFrame(rng.normal(0, 0.6, (len(SEGMENTS), len(FAMILIES))), index=SEGMENTS, columns=FAMILIES),
        value_coef={s: float(rng.normal(0.3, 0.3)) for s in SEGMENTS},
        catalog=catalog,
        main={n: rng.normal(0, 0.2, COMPONENTS[n]) for n in names},
        pair={(a, b): rng.normal(0, 0.15, (COMPONENTS[a], COMPONENTS[b]))
              for a, b in itertools.combinations(names, 2)},
    )


def configured_world() -> "World":
    """The synthetic world of the settings (ECHELON_CALLOUTS_SEED, _WORLD_START): what ingest serves from."""
    from echelon.settings import get_settings

    config = get_settings().callouts.world
    return make_world(config["seed"], start=config["start"], days=400)


def true_rates(ds: str):
    """The configured world's true rates for the serving day ds + 1 and its segment weights, when the logs
    come from it (else None): what the train step scores each candidate's table against."""
    from echelon.settings import get_settings

    if get_settings().callouts.logs:
        return None
    world = configured_world()
    day = dt.date.fromisoformat(ds) + dt.timedelta(days=1)
    return world.rates(day, with_layouts=True), world.segment_weight


def catalog_for(world: World, day: dt.date) -> pd.DataFrame:
    """The reference catalog partition of `day`: callouts that can be served on day + 1 (the serving
    table published tonight is used tomorrow), with their public attributes (no truths)."""
    active = world.active(day + dt.timedelta(days=1))
    return active[["callout_id", "family", "value", "launched_on"]].reset_index(drop=True)


def uniform_policy(world: World, day: dt.date) -> pd.DataFrame:
    """Uniform over the callouts active on `day` and all layouts: the policy before any serving table."""
    callouts = world.active(day)["callout_id"].tolist()
    layouts = all_layouts()["layout_id"].tolist()
    rows = [(s, c, lid, 1.0 / (len(callouts) * len(layouts))) for s in SEGMENTS for c in callouts for lid in layouts]
    return pd.DataFrame(rows, columns=["segment", "callout_id", "layout_id", "probability"])


def simulate_day(world: World, day: dt.date, policy: pd.DataFrame, impressions: int = 5000,
                 seed: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One day of traffic logged under `policy` (segment, callout_id, layout_id, probability).

    Returns (impressions, clicks): impression rows with the logged propensity, and click rows whose
    clicked_at falls up to WINDOW_DAYS after shown_at (exponential delays, mean ~0.7 day, truncated)."""
    seed = world.seed if seed is None else seed
    rng = np.random.default_rng([seed, day.toordinal()])
    segments = np.array(SEGMENTS)
    seg = rng.choice(len(SEGMENTS), size=impressions, p=np.array([world.segment_weight[s] for s in SEGMENTS]))
    catalog = world.catalog.set_index("callout_id")
    layouts = all_layouts().set_index("layout_id")
    layout_logit = {lid: world.layout_effect(tuple(row)) for lid, row in layouts.iterrows()}
    day_start = pd.Timestamp(day).tz_localize("UTC")
    shown = day_start + pd.to_timedelta(np.sort(rng.uniform(0, 86400, impressions)), unit="s")
    out = []
    for s_index, segment in enumerate(SEGMENTS):
        who = np.flatnonzero(seg == s_index)
        table = policy[policy["segment"] == segment]
        if len(who) == 0:
            continue
        if table.empty:
            raise ValueError(f"policy has no rows for segment {segment!r}")
        probs = table["probability"].to_numpy(float)
        pick = rng.choice(len(table), size=len(who), p=probs / probs.sum())
        chosen = table.iloc[pick]
        fam = catalog.loc[chosen["callout_id"], "family"].to_numpy()
        logit = (world.base + world.segment_effect[segment]
                 + world.affinity.loc[segment, fam].to_numpy()
                 + world.value_coef[segment] * catalog.loc[chosen["callout_id"], "value"].to_numpy()
                 + catalog.loc[chosen["callout_id"], "idio"].to_numpy()
                 + np.array([layout_logit[lid] for lid in chosen["layout_id"]]))
        out.append(pd.DataFrame({"row": who, "segment": segment, "callout_id": chosen["callout_id"].to_numpy(),
                                 "layout_id": chosen["layout_id"].to_numpy(),
                                 "propensity": chosen["probability"].to_numpy(float) / probs.sum(),
                                 "rate": special.expit(logit)}))
    frame = pd.concat(out).sort_values("row").reset_index(drop=True)
    frame["impression_id"] = [f"{day:%Y%m%d}-{i:07d}" for i in range(len(frame))]
    frame["position"] = 1
    frame["shown_at"] = shown[frame["row"].to_numpy()]
    clicked = rng.random(len(frame)) < frame["rate"].to_numpy()
    delay_days = np.minimum(rng.exponential(0.7, len(frame)), WINDOW_DAYS - 1e-6)
    clicks = pd.DataFrame({"impression_id": frame["impression_id"][clicked].to_numpy(),
                           "clicked_at": frame["shown_at"][clicked].reset_index(drop=True)
                           + pd.to_timedelta(delay_days[clicked] * 86400, unit="s")})
    # microsecond timestamps, as an event collector keeps them (and as Spark reads parquet)
    clicks["clicked_at"] = clicks["clicked_at"].astype("datetime64[us, UTC]")
    frame["shown_at"] = frame["shown_at"].astype("datetime64[us, UTC]")
    return frame[IMPRESSION_COLUMNS].reset_index(drop=True), clicks.reset_index(drop=True)
