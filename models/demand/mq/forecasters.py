"""MQ-CNN and MQ-Transformer behind the Forecaster contract of models/demand/base.py.

fit() holds out the last horizon of every series as a validation window (its targets never enter the
training crops), trains with forking sequences on random crops of the rest, stops early when the
validation loss stops improving and restores the best checkpoint. predict() runs the network over the
last crop of each series and keeps the forecasts of its last FCT (the series' last timestamp).
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from echelon.models.demand.base import QUANTILES, SERIES, canonical, qcols, sort_quantiles
from echelon.models.demand.gluon import _quiet, _torch_threads, _Vocab, seed_everything
from echelon.models.demand.metrics import season_length
from echelon.models.demand.mq.data import KNOWN_COLUMNS, STATIC_COLUMNS, Panel, crop, prepare, seasonal_lag

log = logging.getLogger(__name__)

META_FILE = "mq.json"
WEIGHTS_FILE = "mq.pt"


def _history(history: pd.DataFrame) -> pd.DataFrame:
    if history.empty:
        raise ValueError("history frame is empty: nothing to learn from or forecast")
    frame = canonical(history)
    frame["target"] = frame["target"].astype(float)
    return frame.sort_values(SERIES + ["timestamp"], kind="stable").reset_index(drop=True)


def _tensors(batch: dict[str, np.ndarray]) -> dict:
    import torch

    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


class _Crops:
    """A map-style dataset whose every item is one training batch of random crops (drawn from one
    seeded generator in order, so a seed gives the same batches)."""

    def __init__(self, panel: Panel, length: int, horizon: int, batch_size: int, batches: int, seed: int):
        self.panel, self.length, self.batch_size, self.batches = panel, length, batch_size, batches
        self.rng = np.random.default_rng(seed)
        total = panel.target.shape[1]
        first = np.argmax(np.isfinite(panel.target), axis=1)
        self.hi = np.full(len(first), total - horizon - length)     # the last `horizon` steps are held out
        self.lo = np.minimum(np.maximum(first - length // 2, 0), self.hi)

    def __len__(self) -> int:
        return self.batches

    def __getitem__(self, index: int) -> dict:
        rows = self.rng.integers(0, len(self.lo), self.batch_size)
        starts = self.rng.integers(self.lo[rows], self.hi[rows] + 1)
        return _tensors(crop(self.panel, rows, starts, self.length))


class MQForecaster:
    """Shared fit/predict/save/load of the MQ networks (see networks.py for the architectures)."""

    name = "mq"
    kind = "mqcnn"

    def __init__(self, *, epochs: int = 40, batches_per_epoch: int = 30, batch_size: int = 32,
                 learning_rate: float = 3e-3, patience: int = 6, context_length: int | None = None,
                 max_history: int = 1500, channels: int = 32, dilations: Sequence[int] = (1, 2, 4, 8, 16, 32),
                 embed_dim: int = 8, context_dim: int = 16, hidden: int = 64, seed: int = 0,
                 num_threads: int | None = 1, accelerator: str = "cpu", seasonal: bool = True, **network: Any):
        self.params = dict(epochs=epochs, batches_per_epoch=batches_per_epoch, batch_size=batch_size,
                           learning_rate=learning_rate, patience=patience, context_length=context_length,
                           max_history=max_history, channels=channels, dilations=list(dilations),
                           embed_dim=embed_dim, context_dim=context_dim, hidden=hidden, seed=seed,
                           num_threads=num_threads, accelerator=accelerator, seasonal=seasonal, **network)
        self.module = None
        self.horizon: int | None = None
        self.freq: str | None = None
        self.quantiles: tuple[float, ...] = QUANTILES
        self.covariates: list[str] = []
        self.lag = 0                     # seasonal lag the decoder reads (data.seasonal_lag); 0 = none
        self.vocab = _Vocab({})
        self.learning_curves: dict[str, list[float]] = {}
        self.train_seconds: float | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.params.items())})"

    # -- shapes ----------------------------------------------------------------------------------
    def _window(self) -> int:
        """FCTs per crop: the encoder's receptive field, at least two horizons."""
        receptive = 1 + sum(self.params["dilations"])
        return int(self.params["context_length"] or max(receptive, 2 * self.horizon))

    def _panel(self, history: pd.DataFrame, future: int = 0, future_frame=None) -> Panel:
        span = max(2 * season_length(self.freq), self.horizon)
        return prepare(history, self.freq, horizon=self.horizon, covariates=self.covariates,
                       vocab=self.vocab, span=span, max_history=self.params["max_history"],
                       pad=self._window(), future=future, future_frame=future_frame, lag=self.lag)

    def _network_args(self, n_known: int) -> dict:
        p = self.params
        args = dict(horizon=self.horizon, n_known=n_known, cardinalities=self.vocab.cardinalities,
                    channels=p["channels"], dilations=p["dilations"], embed_dim=p["embed_dim"],
                    context_dim=p["context_dim"], agnostic_dim=p["context_dim"], hidden=p["hidden"],
                    seasonal=self.lag > 0, year_over_year=self.lag > 0 and bool(p.get("year_over_year", False)))
        extra = {k: v for k, v in p.items() if k in ("position_dim", "attention_dim", "attention_window",
                                                     "feedback_window")}
        return {**args, **extra}

    # -- contract --------------------------------------------------------------------------------
    def fit(self, history: pd.DataFrame, horizon: int, freq: str,
            quantiles: Sequence[float] = QUANTILES) -> "MQForecaster":
        import lightning.pytorch as pl
        import torch
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        from echelon.models.demand.mq.networks import MQModule

        history = _history(history)
        if horizon < 1:
            raise ValueError(f"{self.name}: horizon must be at least 1 (got {horizon})")
        self.horizon, self.freq = int(horizon), freq
        self.quantiles = tuple(sorted(float(q) for q in quantiles))
        self.covariates = [c for c in KNOWN_COLUMNS if c in history.columns and history[c].notna().any()]
        static = [c for c in STATIC_COLUMNS if c in history.columns and history[c].nunique() > 1]
        self.vocab = _Vocab.from_history(history, static)
        longest = int(history.groupby(SERIES).size().max())
        # the seasonal lag only where some series is long enough to have seen it and a horizon after it
        lag = seasonal_lag(freq, self.horizon) if self.params.get("seasonal", True) else 0
        self.lag = lag if lag and longest > lag + 2 * self.horizon else 0
        if longest < 2 * self.horizon + 1:
            raise ValueError(f"{self.name}: the longest series has {longest} steps; training needs at least "
                             f"{2 * self.horizon + 1} (two horizons, one of them held out for validation)")
        p = self.params
        panel = self._panel(history)
        W, H = self._window(), self.horizon
        crops = _Crops(panel, W + H, H, p["batch_size"], p["batches_per_epoch"], p["seed"])
        total = panel.target.shape[1]
        val_rows = np.flatnonzero(np.isfinite(panel.target[:, total - H:]).any(axis=1)
                                  & np.isfinite(panel.target[:, : total - H]).any(axis=1))
        validation = [_tensors(crop(panel, val_rows[i:i + 256], np.full(len(val_rows[i:i + 256]), total - W - H),
                                    W + H)) for i in range(0, len(val_rows), 256)]
        curves = _curves_callback()
        log.info("%s: training on %d series (%d held out for validation), horizon %d, freq %s, covariates %s, "
                 "static %s, seasonal lag %d, up to %d epochs x %d batches of %d crops of %d FCTs", self.name,
                 len(panel.keys), len(val_rows), H, freq, self.covariates or "none", static or "none", self.lag, p["epochs"],
                 p["batches_per_epoch"], p["batch_size"], W)
        started = time.perf_counter()
        seed_everything(p["seed"])
        with _quiet(), _torch_threads(p["num_threads"]), tempfile.TemporaryDirectory(prefix="mq-ckpt-") as tmp:
            module = MQModule(self.kind, self.quantiles, learning_rate=p["learning_rate"],
                              **self._network_args(panel.known.shape[2]))
            checkpoint = ModelCheckpoint(dirpath=tmp, monitor="val_loss", mode="min", save_top_k=1)
            trainer = pl.Trainer(
                max_epochs=p["epochs"], accelerator=p["accelerator"], devices=1, logger=False,
                deterministic=True, enable_progress_bar=False, enable_model_summary=False,
                num_sanity_val_steps=0, default_root_dir=tmp,
                callbacks=[EarlyStopping("val_loss", patience=p["patience"], mode="min"), checkpoint, curves])
            loader = torch.utils.data.DataLoader(crops, batch_size=None, shuffle=False)
            val_loader = torch.utils.data.DataLoader(validation, batch_size=None, shuffle=False)
            trainer.fit(module, loader, val_loader)
            best = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=False)
            module.load_state_dict(best["state_dict"])
        self.module = module.cpu().eval()
        self.learning_curves = curves.curves
        self.train_seconds = time.perf_counter() - started
        log.info("%s: %d epochs in %.1f s, best val_loss %.4f", self.name, len(curves.curves["val_loss"]),
                 self.train_seconds, float(checkpoint.best_model_score))
        return self

    def predict(self, history: pd.DataFrame, future: pd.DataFrame | None = None) -> pd.DataFrame:
        import torch

        if self.module is None:
            raise RuntimeError(f"{self.name}: call fit() or load() before predict()")
        history = _history(history)
        future = canonical(future, required=("item_id", "timestamp")) if future is not None else None
        panel = self._panel(history, future=self.horizon, future_frame=future)
        W, H = self._window(), self.horizon
        total = panel.target.shape[1]
        rows = np.arange(len(panel.keys))
        values = []
        with torch.no_grad(), _torch_threads(self.params["num_threads"]):
            for i in range(0, len(rows), 256):
                chunk = rows[i:i + 256]
                batch = _tensors(crop(panel, chunk, np.full(len(chunk), total - W - H), W + H))
                out = self.module(batch)[:, W - 1] * batch["scale"][:, W - 1, None, None]
                values.append(out.numpy())
        values = np.concatenate(values).reshape(-1, len(self.quantiles))
        frame = pd.DataFrame({
            "item_id": np.repeat([k[0] for k in panel.keys], H),
            "location_id": np.repeat([k[1] for k in panel.keys], H),
            "timestamp": np.concatenate([s.to_numpy() for s in panel.stamps]),
            "horizon": np.tile(np.arange(1, H + 1), len(panel.keys)),
        })
        frame[qcols(self.quantiles)] = values
        return sort_quantiles(frame, self.quantiles)

    def save(self, path: Path) -> None:
        import torch

        if self.module is None:
            raise RuntimeError(f"{self.name}: nothing to save, call fit() first")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save(self.module.state_dict(), path / WEIGHTS_FILE)
        meta = {"class": f"{type(self).__module__}:{type(self).__qualname__}", "name": self.name,
                "params": self.params, "horizon": self.horizon, "freq": self.freq,
                "quantiles": list(self.quantiles), "covariates": self.covariates, "vocab": self.vocab.values,
                "lag": self.lag,
                "hparams": dict(self.module.hparams),
                "learning_curves": self.learning_curves, "train_seconds": self.train_seconds}
        (path / META_FILE).write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, path: Path) -> "MQForecaster":
        import torch

        from echelon.models.demand.mq.networks import MQModule

        path = Path(path)
        meta = json.loads((path / META_FILE).read_text())
        self = cls(**meta["params"])
        self.horizon, self.freq = meta["horizon"], meta["freq"]
        self.quantiles = tuple(meta["quantiles"])
        self.covariates = list(meta["covariates"])
        self.lag = int(meta.get("lag", 0))
        self.vocab = _Vocab(meta["vocab"])
        self.learning_curves = meta.get("learning_curves", {})
        self.train_seconds = meta.get("train_seconds")
        self.module = MQModule(**meta["hparams"])
        self.module.load_state_dict(torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True))
        self.module.eval()
        return self


def _curves_callback():
    import lightning.pytorch as pl

    class Curves(pl.Callback):
        """train_loss, val_loss and the learning rate per epoch (the learning_curves attribute), and a log
        line each."""

        def __init__(self):
            self.curves: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "learning_rate": []}

        def on_train_epoch_start(self, trainer, module):
            self.started = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            for name in ("train_loss", "val_loss"):
                value = trainer.callback_metrics.get(name)
                if value is not None:
                    self.curves[name].append(float(value))
            self.curves["learning_rate"].append(float(trainer.optimizers[0].param_groups[0]["lr"]))
            log.info("%s epoch %d/%d: %s in %.1f s", module.hparams.kind, trainer.current_epoch + 1,
                     trainer.max_epochs, ", ".join(f"{k} {v[-1]:.4f}" for k, v in self.curves.items() if v),
                     time.perf_counter() - self.started)

    return Curves()


class MQCNNForecaster(MQForecaster):
    """MQ-CNN (Wen et al. 2017): dilated causal CNN encoder, global + local MLP decoder."""

    name = "mqcnn"
    kind = "mqcnn"


class MQTransformerForecaster(MQForecaster):
    """MQ-Transformer (Eisenach et al. 2020): the MQ-CNN trunk with a learned position encoding,
    horizon-specific decoder-encoder attention and feedback-aware decoder self-attention."""

    name = "mqtransformer"
    kind = "mqtransformer"

    def __init__(self, *, position_dim: int = 8, attention_dim: int = 16, attention_window: int = 28,
                 feedback_window: int = 7, **kwargs: Any):
        super().__init__(position_dim=position_dim, attention_dim=attention_dim,
                         attention_window=attention_window, feedback_window=feedback_window, **kwargs)
