"""Supervised damage classifier (Lightning): a small CNN trained here from scratch, two heads.

- damage: one logit, binary cross-entropy against `label`;
- type: logits over DAMAGE_TYPES, cross-entropy on damaged images only (a pristine image has no type).

Tiny on purpose (about 60k parameters at 64 px): the machine is two shared CPU cores, and the gallery
score carries what one image alone cannot show. Augmentation is flips only: pose and lighting vary in
the data already.
"""
from __future__ import annotations

import logging

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from echelon.catalog.damage import DAMAGE_TYPES
from echelon.settings import get_settings

log = logging.getLogger(__name__)


def torch_threads(variable: str = "ECHELON_TORCH_THREADS") -> int:
    """Threads for torch: few, because the machine is shared (`variable`, default 1)."""
    threads = get_settings().damage.torch_threads(variable)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def scoring_threads() -> int:
    """Intra-op threads while scoring: ECHELON_DAMAGE_SCORE_THREADS, default 1, whatever training uses.
    Scoring is many small operations (a 64 px CNN pass, a cdist per product chunk), and each parallel
    region waits for its slowest thread: on the loaded 2-core machine two threads scored 3-15x slower
    than one. Cores are used by running scorers side by side instead (Spark's python workers, one per
    core), which needs no synchronisation (benchmarks/results/damage_benchmark.md, throughput)."""
    return torch_threads("ECHELON_DAMAGE_SCORE_THREADS")


class DamageNet(L.LightningModule):
    def __init__(self, types: int = len(DAMAGE_TYPES), width: int = 16, lr: float = 3e-3, type_weight: float = 0.5):
        super().__init__()
        self.save_hyperparameters()

        def block(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True), nn.MaxPool2d(2))

        self.body = nn.Sequential(block(3, width), block(width, 2 * width), block(2 * width, 4 * width),
                                  block(4 * width, 4 * width), nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.damage = nn.Linear(4 * width, 1)
        self.kind = nn.Linear(4 * width, types)

    def forward(self, x):
        h = self.body(x)
        return self.damage(h).squeeze(1), self.kind(h)

    def training_step(self, batch, _):
        x, y, t = batch
        if torch.rand(()) < 0.5:   # flips: damage has no preferred side
            x = x.flip(3)
        if torch.rand(()) < 0.5:
            x = x.flip(2)
        logit, type_logits = self(x)
        loss = F.binary_cross_entropy_with_logits(logit, y.float())
        damaged = t >= 0
        if damaged.any():
            loss = loss + self.hparams.type_weight * F.cross_entropy(type_logits[damaged], t[damaged])
        self.log("train_loss", loss, prog_bar=False, on_epoch=True, on_step=False)
        return loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=1e-4)


def type_index(types) -> np.ndarray:
    """damage_type strings -> class indices, -1 for pristine ('none' or empty)."""
    lookup = {name: i for i, name in enumerate(DAMAGE_TYPES)}
    return np.array([lookup.get(str(t), -1) for t in types], dtype=np.int64)


def fit(images: np.ndarray, labels, types, epochs: int = 8, seed: int = 0, batch_size: int = 32,
        width: int = 16) -> DamageNet:
    """Train on (n, 3, S, S) images with binary labels and damage types; deterministic by seed."""
    torch_threads()
    L.seed_everything(seed, workers=True, verbose=False)
    dataset = torch.utils.data.TensorDataset(torch.as_tensor(images), torch.as_tensor(np.asarray(labels, dtype=np.int64)),
                                             torch.as_tensor(type_index(types)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    model = DamageNet(width=width)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, deterministic=True, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    trainer.fit(model, loader)
    log.info("supervised model: %d images, %d epochs, final train loss %.4f", len(images), epochs,
             float(trainer.callback_metrics.get("train_loss", float("nan"))))
    return model.eval()


@torch.no_grad()
def predict(model: DamageNet, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Damage probability and the most likely damage type index, per image."""
    model.eval()
    probs, types = [], []
    for start in range(0, len(images), batch_size):
        logit, type_logits = model(torch.as_tensor(images[start:start + batch_size]))
        probs.append(torch.sigmoid(logit).numpy())
        types.append(type_logits.argmax(1).numpy())
    if not probs:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return np.concatenate(probs).astype(np.float64), np.concatenate(types)
