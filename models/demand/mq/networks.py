"""The MQ-CNN and MQ-Transformer networks (PyTorch) and the LightningModule that trains them.

Both read a crop of W + H steps of the panel (see data.py) and treat every one of its first W steps as
a forecast creation time (FCT) t at once ("forking sequences", Wen et al. 2017): a causal encoder gives
h_t from the steps <= t only, and the decoder maps h_t plus the known covariates of t+1..t+H to the
quantiles of y_{t+1..t+H} / s_t. Output: (batch, W, H, quantiles) in units of the causal scale s_t.

MQ-CNN (Wen et al. 2017, the convolutional encoder variant)
    encoder   stacked dilated causal 1-D convolutions (kernel 2, dilations 1, 2, 4, ...) with residual
              connections over [y_t / s_t, observed_t, log(1 + s_t), known covariates_t, static embeddings]
    global    MLP([h_t, static, covariates of t+1..t+H flattened]) -> one horizon-specific context c_{t,h}
              per step h plus one horizon-agnostic context c_a
    local     one MLP shared across h: (c_{t,h}, c_a, covariates of t+h) -> all quantiles of step h;
              the quantiles are a base plus non-negative increments, so they never cross.

MQ-Transformer (Eisenach et al. 2020), the same trunk plus
    position  a learned, context-dependent position encoding: a (non-causal) convolution over the known
              calendar and event indicators (promo, price) instead of a fixed sinusoid, so the network
              can learn seasonal shapes and distances to events; it enters the encoder and the queries.
    dec-enc   horizon-specific decoder-encoder attention: the query of (t, h) is a per-horizon projection
              of [h_t, position of t+h]; keys are [h_r, position of r] and values h_r for the last L
              encoder steps r <= t. It lets step t+h look up the past steps whose context matches its
              own (same weekday, same point in a season, last promo ...). Paper: several heads and a
              per-horizon attention over the whole history; here one head over a window of L steps.
    feedback  decoder self-attention over the model's own past forecasts: for (t, h) it attends over the
              FCTs t-j (j = 1..J) that forecast the same target period t+h, with keys and values made
              from their horizon-specific contexts, the revision between their median forecast and the
              current one, and their realised error at period t (y_t minus what FCT t-j forecast for
              t, known at t). This is the feedback-aware part that lets the network damp revisions.
              Simplified: the past forecasts are the medians of a first, feedback-free linear head on
              the same decoder features (detached; the paper's past forecasts are its final ones, which
              would need a sequential pass), and only J past FCTs are seen (the paper: all within the
              horizon). That head is trained too (median loss, half weight).
Both mask what a FCT must not see: targets after t never enter its inputs (checked by the tests).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import lightning.pytorch as pl
import torch
from torch import nn


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


class CausalConvEncoder(nn.Module):
    """Residual dilated causal 1-D convolutions: output at t depends on inputs at <= t only."""

    def __init__(self, inputs: int, channels: int, dilations: Sequence[int], kernel: int = 2):
        super().__init__()
        self.inputs = nn.Conv1d(inputs, channels, 1)
        self.layers = nn.ModuleList(nn.Conv1d(channels, channels, kernel, dilation=d) for d in dilations)
        self.pads = [(kernel - 1) * d for d in dilations]

    def forward(self, x: torch.Tensor) -> torch.Tensor:          # (B, T, inputs) -> (B, T, channels)
        h = torch.relu(self.inputs(x.transpose(1, 2)))
        for conv, pad in zip(self.layers, self.pads):
            h = h + torch.relu(conv(nn.functional.pad(h, (pad, 0))))   # left padding only: causal
        return h.transpose(1, 2)


class MQCNN(nn.Module):
    """MQ-CNN; `forward` returns quantiles (B, W, H, Q) per FCT (see module docstring)."""

    def __init__(self, *, horizon: int, n_known: int, n_quantiles: int, cardinalities: Sequence[int],
                 channels: int = 32, dilations: Sequence[int] = (1, 2, 4, 8, 16, 32), embed_dim: int = 8,
                 context_dim: int = 16, agnostic_dim: int = 16, hidden: int = 64, position_dim: int = 0):
        super().__init__()
        self.horizon, self.n_quantiles, self.context_dim = horizon, n_quantiles, context_dim
        self.embeddings = nn.ModuleList(nn.Embedding(c, embed_dim) for c in cardinalities)
        static = embed_dim * len(cardinalities)
        step = n_known + position_dim                      # what each future step brings to the decoder
        self.encoder = CausalConvEncoder(3 + step + static, channels, dilations)
        self.global_mlp = _mlp(channels + static + horizon * step, hidden,
                               horizon * context_dim + agnostic_dim)
        self.local_extra = 0                               # extra per-step inputs of subclasses
        self.local_inputs = context_dim + agnostic_dim + step
        self.local_mlp = _mlp(self.local_inputs, hidden, n_quantiles)

    def build_local(self, extra: int) -> None:
        self.local_extra = extra
        self.local_mlp = _mlp(self.local_inputs + extra, self.local_mlp[0].out_features, self.n_quantiles)

    def positions(self, known: torch.Tensor) -> torch.Tensor:
        """Per-step position/covariate features (MQ-CNN: the covariates as they are)."""
        return known

    def quantiles(self, raw: torch.Tensor) -> torch.Tensor:
        """First output is the lowest quantile, the others add non-negative steps: no crossing."""
        if self.n_quantiles == 1:
            return raw
        return torch.cat([raw[..., :1], raw[..., :1] + torch.cumsum(nn.functional.softplus(raw[..., 1:]), -1)], -1)

    def trunk(self, batch: dict[str, torch.Tensor]):
        target, scale, known = batch["target"], batch["scale"], batch["known"]
        B, total = target.shape
        H = self.horizon
        W = total - H
        steps = self.positions(known)                                       # (B, W+H, step)
        static = (torch.cat([e(batch["static"][:, i]) for i, e in enumerate(self.embeddings)], -1)
                  if len(self.embeddings) else steps.new_zeros(B, 0))
        observed = torch.isfinite(target[:, :W])
        y = torch.where(observed, target[:, :W], 0.0) / scale[:, :W]
        enc_in = torch.cat([y[..., None], observed[..., None].float(), torch.log1p(scale[:, :W])[..., None] * 0.2,
                            steps[:, :W], static[:, None, :].expand(B, W, -1)], -1)
        h = self.encoder(enc_in)                                            # (B, W, C)
        future = steps[:, 1:].unfold(1, H, 1).permute(0, 1, 3, 2)          # (B, W, H, step): t+1..t+H
        g = self.global_mlp(torch.cat([h, static[:, None, :].expand(B, W, -1), future.flatten(2)], -1))
        contexts = g[..., : H * self.context_dim].reshape(B, W, H, self.context_dim)
        agnostic = g[..., H * self.context_dim:][:, :, None, :].expand(B, W, H, -1)
        return h, steps, future, contexts, agnostic

    def forward(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Outputs, the final quantiles last (MQ-CNN has only those)."""
        _, _, future, contexts, agnostic = self.trunk(batch)
        return [self.quantiles(self.local_mlp(torch.cat([contexts, agnostic, future], -1)))]


class MQTransformer(MQCNN):
    """MQ-CNN trunk + learned position encoding, horizon-specific decoder-encoder attention and
    feedback-aware decoder self-attention (see module docstring)."""

    def __init__(self, *, horizon: int, n_known: int, position_dim: int = 8, attention_dim: int = 16,
                 attention_window: int = 28, feedback_window: int = 7, **kwargs: Any):
        super().__init__(horizon=horizon, n_known=n_known, position_dim=position_dim, **kwargs)
        channels = self.encoder.inputs.out_channels
        self.position = nn.Conv1d(max(n_known, 1), position_dim, kernel_size=7, padding=3)
        self.n_known, self.d, self.window = n_known, attention_dim, attention_window
        self.feedback = max(min(feedback_window, horizon - 1), 0)
        # horizon-specific query projections: one (channels + position) x d matrix per horizon step
        self.query = nn.Parameter(torch.randn(horizon, channels + position_dim, attention_dim)
                                  / math.sqrt(channels + position_dim))
        self.key = nn.Linear(channels + position_dim, attention_dim)
        self.value = nn.Linear(channels, attention_dim)
        self.fb_query = nn.Linear(self.context_dim, attention_dim)
        # key/value of a past forecast: linear in its context, its revision and its realised error
        # (the context is projected before the gather over past FCTs, which is J times cheaper)
        self.fb_past = nn.Linear(self.context_dim, 2 * attention_dim)
        self.fb_revision = nn.Parameter(torch.randn(2 * attention_dim) * 0.1)
        self.fb_error = nn.Parameter(torch.randn(2 * attention_dim) * 0.1)
        self.fb_null = nn.Parameter(torch.zeros(2 * attention_dim))       # "no past forecast" key/value
        self.build_local(2 * attention_dim)              # + decoder-encoder context + feedback
        # the first pass only needs the median the past FCTs forecast: one linear head, not all quantiles
        self.first_median = nn.Linear(self.local_inputs + attention_dim, 1)

    def positions(self, known: torch.Tensor) -> torch.Tensor:
        x = known if self.n_known else known.new_zeros(*known.shape[:2], 1)
        pe = torch.tanh(self.position(x.transpose(1, 2))).transpose(1, 2)   # covariates only: no target
        return torch.cat([known, pe], -1)

    def decoder_encoder(self, h: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        B, W, C = h.shape
        H, L = self.horizon, min(self.window, W)
        pe = steps[..., self.n_known:]
        pe_future = pe[:, 1:].unfold(1, H, 1).permute(0, 1, 3, 2)            # (B, W, H, P)
        q = torch.einsum("bthi,hid->bthd",
                         torch.cat([h[:, :, None, :].expand(B, W, H, C), pe_future], -1), self.query)
        k = self.key(torch.cat([h, pe[:, :W]], -1))                          # (B, W, d)
        v = self.value(h)
        pad = lambda x: nn.functional.pad(x, (0, 0, L - 1, 0)).unfold(1, L, 1)   # (B, W, d, L): r = t-L+1..t
        scores = torch.einsum("bthd,btdl->bthl", q, pad(k)) / math.sqrt(self.d)
        before_crop = torch.arange(W, device=h.device)[:, None] - (L - 1) + torch.arange(L, device=h.device) < 0
        scores = scores.masked_fill(before_crop[None, :, None, :], float("-inf"))
        return torch.einsum("bthl,btdl->bthd", torch.softmax(scores, -1), pad(v))

    def feedback_attention(self, contexts: torch.Tensor, first: torch.Tensor,
                           batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, W, H, d): attention of each (t, h) over FCTs t-j's forecasts of the same period t+h."""
        B, W, H, _ = contexts.shape
        J, dev = self.feedback, contexts.device
        if J == 0:
            return contexts.new_zeros(B, W, H, self.d)
        scale = batch["scale"][:, :W]
        median = first[..., 0].detach() * scale[..., None]                    # absolute units (B, W, H)
        j = torch.arange(1, J + 1, device=dev)
        past_t = torch.arange(W, device=dev)[:, None] - j                    # (W, J): FCT t-j
        same_h = torch.arange(H, device=dev)[:, None] + j                    # (H, J): its horizon for t+h
        valid = (past_t >= 0)[:, None, :] & (same_h < H)[None, :, :]         # (W, H, J)
        tt = past_t.clamp(min=0)[:, None, :].expand(W, H, J)
        hh = same_h.clamp(max=H - 1)[None, :, :].expand(W, H, J)
        past = self.fb_past(contexts)[:, tt, hh]                            # (B, W, H, J, 2d)
        revision = (median[:, tt, hh] - median[:, :, :, None]) / scale[:, :, None, None]
        # realised error at period t of FCT t-j (its horizon j), known at t
        actual = batch["target"][:, :W]
        realised = actual[:, :, None] - median[:, past_t.clamp(min=0), (j - 1)[None, :].expand(W, J)]
        error = torch.nan_to_num(realised / scale[..., None], nan=0.0).clamp(-10, 10)
        error = error[:, :, None, :].expand(B, W, H, J)
        kv = past + revision[..., None] * self.fb_revision + error[..., None] * self.fb_error
        kv = torch.cat([kv, self.fb_null.expand(B, W, H, 1, -1)], 3)        # + the null slot
        mask = torch.cat([valid, torch.ones(W, H, 1, dtype=torch.bool, device=dev)], -1)
        keys, values = kv[..., : self.d], kv[..., self.d:]
        # J is small: broadcast products beat a batched matmul of (b, t, h) tiny matrices
        scores = (self.fb_query(contexts)[..., None, :] * keys).sum(-1) / math.sqrt(self.d)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)
        return (weights[..., None] * values).sum(-2)

    def forward(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        h, steps, future, contexts, agnostic = self.trunk(batch)
        attended = self.decoder_encoder(h, steps)
        B, W, H, _ = contexts.shape
        base = torch.cat([contexts, agnostic, future, attended], -1)
        first = self.first_median(base)                                      # (B, W, H, 1)
        feedback = self.feedback_attention(contexts, first, batch)
        final = self.quantiles(self.local_mlp(torch.cat([base, feedback], -1)))
        return [first, final]


NETWORKS = {"mqcnn": MQCNN, "mqtransformer": MQTransformer}


def pinball(forecast: torch.Tensor, batch: dict[str, torch.Tensor], quantiles: torch.Tensor,
            fct_from: int = 0) -> torch.Tensor:
    """Quantile loss summed over quantiles, averaged over the observed (FCT >= fct_from, horizon) targets."""
    H = forecast.shape[2]
    W = batch["target"].shape[1] - H
    actual = batch["target"][:, 1:].unfold(1, H, 1) / batch["scale"][:, :W, None]     # (B, W, H)
    actual, forecast = actual[:, fct_from:], forecast[:, fct_from:]
    observed = torch.isfinite(actual)
    diff = torch.where(observed, actual, 0.0)[..., None] - forecast
    loss = torch.maximum(quantiles * diff, (quantiles - 1) * diff).sum(-1)
    return (loss * observed).sum() / observed.sum().clamp(min=1)


class MQModule(pl.LightningModule):
    """Trains an MQ network on forking sequences: train loss over every FCT of a crop, validation loss
    on the FCT just before the held-out last horizon (the last FCT of the validation crop)."""

    def __init__(self, kind: str, quantiles: Sequence[float], learning_rate: float = 1e-3,
                 **network: Any):
        super().__init__()
        self.save_hyperparameters()
        self.network = NETWORKS[kind](n_quantiles=len(quantiles), **network)
        self.register_buffer("levels", torch.tensor(list(quantiles), dtype=torch.float32))
        self.learning_rate = learning_rate

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.network(batch)[-1]

    def _loss(self, batch, fct_from: int = 0) -> torch.Tensor:
        outputs = self.network(batch)
        loss = pinball(outputs[-1], batch, self.levels, fct_from)
        if len(outputs) == 1:
            return loss
        # the MQ-Transformer's first-pass median (what its feedback attends over) is trained too, at half weight
        return (loss + 0.5 * pinball(outputs[0], batch, self.levels.new_tensor([0.5]), fct_from)) / 1.5

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=batch["target"].shape[0])
        return loss

    def validation_step(self, batch, batch_idx):
        W = batch["target"].shape[1] - self.network.horizon
        loss = self._loss(batch, fct_from=W - 1)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=batch["target"].shape[0])
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)
