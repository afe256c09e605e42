"""The MQ-CNN and MQ-Transformer networks (PyTorch) and the LightningModule that trains them.

Both read a crop of W + H steps of the panel (see data.py) and treat every one of its first W steps as
a forecast creation time (FCT) t at once ("forking sequences", Wen et al. 2017): a causal encoder gives
h_t from the steps <= t only, and the decoder maps h_t plus the known covariates of t+1..t+H to the
quantiles of y_{t+1..t+H} / s_t. Output: (batch, W, H, quantiles) in units of the causal scale s_t.

MQ-CNN (Wen et al. 2017, the convolutional encoder variant)
    encoder   stacked dilated causal 1-D convolutions (kernel 2, dilations 1, 2, 4, ...) with residual
              connections over [y_t / s_t, observed_t, log(1 + s_t), known covariates_t, static embeddings]
              (+ the seasonal lag y_{t-P} / s_t and whether it is known, with `seasonal`)
    global    MLP([h_t, static, covariates of t+1..t+H flattened]) -> one horizon-specific context c_{t,h}
              per step h plus one horizon-agnostic context c_a
    local     one MLP shared across h: (c_{t,h}, c_a, covariates of t+h) -> all quantiles of step h;
              the quantiles are a base plus non-negative increments, so they never cross.
    seasonal  (not in the paper, an input like LightGBM's year-ago lags) the decoder's covariates of step
              t+h include y_{t+h-P} / s_t and its known flag: a past value when H <= P (data.seasonal_lag).
    yoy       (not in the paper, optional: `year_over_year`) also last year's smoothed path from the FCT's
              level to step t+h, smooth(y)_{t+h-P} / s_{t-P} (data.py), and its known flag: LightGBM's
              year-over-year projection, without the single day's noise of y_{t+h-P}.

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

Size: the two networks share one trunk and the module that trains them; split apart, the MQ-Transformer
would import MQ-CNN's private pieces from a second file.
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
                 context_dim: int = 16, agnostic_dim: int = 16, hidden: int = 64, position_dim: int = 0,
                 seasonal: bool = False, year_over_year: bool = False):
        super().__init__()
        self.horizon, self.n_quantiles, self.context_dim = horizon, n_quantiles, context_dim
        self.seasonal, self.year_over_year = seasonal, seasonal and year_over_year
        self.embeddings = nn.ModuleList(nn.Embedding(c, embed_dim) for c in cardinalities)
        static = embed_dim * len(cardinalities)
        # y_{.-P} / s_t and its known flag (+ the year-over-year ratio and its flag)
        lag = (2 if seasonal else 0) + (2 if self.year_over_year else 0)
        step = n_known + position_dim + lag                # what each future step brings to the decoder
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
        lag_now, lag_future = [], []
        if self.seasonal:
            lagged = batch["lagged"]
            known_lag = torch.isfinite(lagged)
            value = torch.where(known_lag, lagged, 0.0)
            lag_now = [value[:, :W, None] / scale[:, :W, None], known_lag[:, :W, None].float()]
            # step t+h's lagged value over the FCT's own scale s_t
            ahead = value[:, 1:].unfold(1, H, 1) / scale[:, :W, None]                       # (B, W, H)
            lag_future = [ahead[..., None], known_lag[:, 1:].unfold(1, H, 1)[..., None].float()]
        if self.year_over_year:
            # last year's smoothed value at step t+h over last year's scale at t (data.py): units of y / s_t
            smooth, base = batch["lag_smooth"], batch["lag_scale"][:, :W]
            ok_base = torch.isfinite(base) & (base > 0)
            base = torch.where(ok_base, base, 1.0)
            ok_now = ok_base & torch.isfinite(smooth[:, :W])
            now = torch.where(ok_now, torch.nan_to_num(smooth[:, :W]) / base, 0.0).clamp(0, 10)
            ok_ahead = ok_base[..., None] & torch.isfinite(smooth[:, 1:]).unfold(1, H, 1)
            ratio = torch.where(ok_ahead, torch.nan_to_num(smooth[:, 1:]).unfold(1, H, 1) / base[..., None],
                                0.0).clamp(0, 10)                                       # (B, W, H)
            lag_now += [now[..., None], ok_now[..., None].float()]
            lag_future += [ratio[..., None], ok_ahead[..., None].float()]
        enc_in = torch.cat([y[..., None], observed[..., None].float(), torch.log1p(scale[:, :W])[..., None] * 0.2,
                            steps[:, :W], *lag_now, static[:, None, :].expand(B, W, -1)], -1)
        h = self.encoder(enc_in)                                            # (B, W, C)
        future = steps[:, 1:].unfold(1, H, 1).permute(0, 1, 3, 2)          # (B, W, H, step): t+1..t+H
        future = torch.cat([future, *lag_future], -1)
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
        """(B, W, H, d): attention of each (t, h) over FCTs t-j's forecasts of the same period t+h.

        Key/value of FCT t-j = P(its context) + revision * r + error * e, so the score splits into
        q.P_j + revision_j (q.r_k) + error_j (q.e_k) and the output into sum_j w_j P_j + (sum_j w_j
        revision_j) r_v + (sum_j w_j error_j) e_v: per j one shifted view of (B, W, H, .) tensors, no
        gathered (B, W, H, J, 2d) tensor (whose backward dominated training time)."""
        B, W, H, _ = contexts.shape
        J, d = self.feedback, self.d
        if J == 0:
            return contexts.new_zeros(B, W, H, d)
        scale = batch["scale"][:, :W]
        median = first[..., 0].detach() * scale[..., None]                    # absolute units (B, W, H)
        actual = batch["target"][:, :W]
        past = self.fb_past(contexts)                                        # (B, W, H, 2d)
        query = self.fb_query(contexts)                                      # (B, W, H, d)
        q_rev, q_err = query @ self.fb_revision[:d], query @ self.fb_error[:d]  # (B, W, H)
        q_null = query @ self.fb_null[:d]

        def shifted(x: torch.Tensor, j: int) -> torch.Tensor:
            """x[:, t-j, h+j] at [:, t, h] (zeros where t-j < 0 or h+j >= H); x is (B, W, H, ...)."""
            extra = x.dim() - 3
            padded = nn.functional.pad(x, (0, 0) * extra + (0, j, j, 0))
            return padded[:, :W, j:j + H]

        scores, revisions, errors = [], [], []
        for j in range(1, J + 1):
            revision = (shifted(median, j) - median) / scale[..., None]
            # realised error at period t of FCT t-j (its horizon j), known at t
            realised = actual - nn.functional.pad(median[:, :, j - 1], (j, 0))[:, :W]
            error = torch.nan_to_num(realised / scale, nan=0.0).clamp(-10, 10)[:, :, None].expand(B, W, H)
            scores.append((query * shifted(past[..., :d], j)).sum(-1) + revision * q_rev + error * q_err)
            revisions.append(revision)
            errors.append(error)
        scores = torch.stack(scores + [q_null], -1) / math.sqrt(d)         # (B, W, H, J + 1), null last
        t = torch.arange(W, device=contexts.device)[:, None, None]
        h = torch.arange(H, device=contexts.device)[None, :, None]
        j = torch.arange(1, J + 2, device=contexts.device)
        valid = ((t - j >= 0) & (h + j < H)) | (j == J + 1)                 # (W, H, J + 1)
        weights = torch.softmax(scores.masked_fill(~valid, float("-inf")), -1)
        out = weights[..., J, None] * self.fb_null[d:]
        for k in range(J):
            out = out + weights[..., k, None] * shifted(past[..., d:], k + 1)
        out = out + (weights[..., :J] * torch.stack(revisions, -1)).sum(-1, keepdim=True) * self.fb_revision[d:]
        return out + (weights[..., :J] * torch.stack(errors, -1)).sum(-1, keepdim=True) * self.fb_error[d:]

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
        # halve the step size when the validation loss stalls for two epochs (down to 1/16 of it): the
        # late epochs then refine instead of bouncing around the optimum; early stopping ends training
        optimizer = torch.optim.Adam(self.parameters(), lr=self.learning_rate)
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2,
                                                             min_lr=self.learning_rate / 16)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": "val_loss"}}
