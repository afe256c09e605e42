"""Deep PQR (Geng, Nassif, Manzanares, Reppen & Sircar, ICML 2020) and its two baselines, in PyTorch Lightning.

Choices follow a dynamic logit, pi(a|s) = exp Q(s,a) / sum_b exp Q(s,b), and the anchor action a0 (not
being a member) has reward 0 in every state. Three neural stages, each fitted on observed transitions
(state s, action a, next state s'):
  P  pi(a|s): a classifier on (s, a);
  Q  Q(s,a0) by fitted-Q iteration on the transitions that took a0 ONLY:
       Q(s,a0) <- 0 + beta * [Q(s',a0) - log pi(a0|s')]     (target network refreshed every `q_inner` steps)
     then Q(s,a) = Q(s,a0) + log pi(a|s) - log pi(a0|s);
  R  r(s,a) = Q(s,a) - beta * E[Q(s',a0) - log pi(a0|s') | s, a], the expectation a regression on all
     observed transitions.
The Q and R networks read the post-decision state of (s, a) (echelon.membership_mdp.post_decision: the
status the action leads to, membership, and the rest of s), the same sufficient statistic of the next month
that the counterfactual's transitions use. Regressing on (s, one-hot a) instead left each action's
expectation to be extrapolated into the states where it is rarely taken (leaving mid-term, switching):
on the benchmark world, errors of 3 in the R stage's expectation (its spread: 6) and plan-share errors of
2-5 pp that the exact Q and R stages on the same P stage did not have.
Baselines: the static logit (beta = 0: r(s,a) = log pi(a|s) - log pi(a0|s), the myopic reading of the same
choices) and behaviour cloning (the P stage alone: a policy, no reward, so no answer to a reward change).

Every stage trains full batch on the distinct rows of the (discrete) state space, weighted by their
counts: one Lightning epoch of identical batches, `inner` Adam steps per Lightning step.

Size: the three Lightning stages, the fitted model and the baselines that reuse its policy network.
"""
from __future__ import annotations

import logging
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from echelon.membership_mdp import ACTIONS, ANCHOR, STATE_COLUMNS, MembershipError, features, post_decision

log = logging.getLogger(__name__)


@dataclass
class FitConfig:
    beta: float = 0.9
    hidden: int = 32
    lr: float = 1e-2
    p_steps: int = 1500
    q_iterations: int = 100
    q_inner: int = 10
    r_steps: int = 1000
    seed: int = 0
    accelerator: str = "cpu"
    threads: int = 1
    p_members: int = 3

    def scaled(self, factor: float) -> "FitConfig":
        """The same fit with every stage's steps times `factor` (tests and tiny DAG runs)."""
        return dataclasses.replace(self, p_steps=max(1, int(self.p_steps * factor)),
                                   q_iterations=max(1, int(self.q_iterations * factor)),
                                   r_steps=max(1, int(self.r_steps * factor)))


def mlp(n_in: int, n_out: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, n_out))


class _Repeat(torch.utils.data.Dataset):
    """The whole data set as one batch, `steps` times: full-batch training in one Lightning epoch."""

    def __init__(self, tensors: tuple, steps: int):
        self.tensors, self.steps = tensors, steps

    def __len__(self):
        return self.steps

    def __getitem__(self, i):
        return self.tensors


class _Stage:
    """What the three stages share: Adam, `inner` gradient steps per Lightning step (manual optimisation:
    Lightning's per-step overhead dwarfs a full-batch step of these small networks), and the loss of every
    gradient step kept for the loss curves."""
    automatic_optimization = False
    inner = 20
    planned = 1

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.lr)

    def _steps(self, loss_of) -> torch.Tensor:
        optimizer = self.optimizers()
        for _ in range(self.inner):
            # the learning rate decays geometrically to 5% of its start over the stage's planned steps
            for group in optimizer.param_groups:
                group["lr"] = self.lr * 0.05 ** min(1.0, len(self.losses) / max(1, self.planned))
            optimizer.zero_grad()
            loss = loss_of()
            self.manual_backward(loss)
            optimizer.step()
            self.losses.append(float(loss.detach()))
        return loss


def _lightning():
    import lightning as L

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return L


def _fit(module, tensors: tuple, steps: int, config: "FitConfig") -> None:
    """Train `module` for about `steps` gradient steps on the full batch `tensors` (on one CPU thread by
    default: on a loaded 2-core machine, two threads per step ran 2.3x slower)."""
    L = _lightning()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        trainer = L.Trainer(max_epochs=1, accelerator=config.accelerator, devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        module.planned = max(1, steps // module.inner) * module.inner
        loader = torch.utils.data.DataLoader(_Repeat(tensors, max(1, steps // module.inner)), batch_size=None)
        trainer.fit(module, loader)
    finally:
        torch.set_num_threads(threads)
    module.net.cpu().eval()


def _weighted_mse(prediction, target, weight):
    return (weight * (prediction - target) ** 2).sum() / weight.sum()


def unique_rows(*arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique rows of the arrays side by side, the index of each input row's unique row, counts): the
    state space is discrete, so the stages train on each distinct row once, weighted by how often it occurs
    (the same loss as on every row, at a fraction of the cost)."""
    joined = np.hstack([np.asarray(a, dtype=np.float32).reshape(len(a), -1) for a in arrays])
    unique, inverse, counts = np.unique(joined, axis=0, return_inverse=True, return_counts=True)
    return unique, inverse.ravel(), counts.astype(np.float32)


def _modules():
    L = _lightning()

    class PolicyStage(_Stage, L.LightningModule):
        def __init__(self, n_in, hidden, lr):
            super().__init__()
            self.net, self.lr, self.losses = mlp(n_in, len(ACTIONS), hidden), lr, []

        def training_step(self, batch, _):
            x, counts = batch                      # unique states, (n, 3) choice counts
            return self._steps(lambda: -(counts * F.log_softmax(self.net(x), dim=-1)).sum() / counts.sum())

    class AnchorQStage(_Stage, L.LightningModule):
        def __init__(self, n_in, hidden, lr, beta, inner):
            super().__init__()
            self.net, self.lr, self.beta, self.inner, self.losses = mlp(n_in, 1, hidden), lr, beta, inner, []

        def training_step(self, batch, _):
            # one fitted-Q iteration: targets from the previous iteration's network, then `inner` steps
            x, x_next, log_pi0_next, w = batch
            with torch.no_grad():
                y = self.beta * (self.net(x_next).squeeze(-1) - log_pi0_next)   # r(s, a0) = 0: the anchor
            return self._steps(lambda: _weighted_mse(self.net(x).squeeze(-1), y, w))

    class RegressionStage(_Stage, L.LightningModule):
        def __init__(self, n_in, hidden, lr):
            super().__init__()
            self.net, self.lr, self.losses = mlp(n_in, 1, hidden), lr, []

        def training_step(self, batch, _):
            x, y, w = batch
            return self._steps(lambda: _weighted_mse(self.net(x).squeeze(-1), y, w))

    return PolicyStage, AnchorQStage, RegressionStage


def action_codes(actions: pd.Series) -> np.ndarray:
    return pd.Categorical(actions, categories=ACTIONS).codes.astype(np.int64)


def next_state(rows: pd.DataFrame) -> pd.DataFrame:
    """The next-state columns of transitions as a frame of state columns."""
    return pd.DataFrame({c: rows[f"next_{c}"].to_numpy() for c in STATE_COLUMNS})


def _tensor(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a))


class PolicyEnsemble(nn.Module):
    """The P stage's members averaged in log space: forward gives the normalised mean of their log choice
    probabilities (a log-policy, so log_softmax of it is itself). Log space, not probabilities: the reward is
    linear in log pi (given the Q stage, exactly so for pqr.exact_reward) and the price sensitivity linear in
    the reward, so the ensemble's sensitivity is the members' mean; averaging probabilities read 0.33 off
    members of 0.25, 0.28 and 0.34, and on two worlds every segment's came out above the truth."""

    def __init__(self, members: list):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x):
        return F.log_softmax(torch.stack([F.log_softmax(m(x), dim=-1) for m in self.members]).mean(dim=0), dim=-1)


def fit_policy(x: np.ndarray, actions: np.ndarray, config: FitConfig):
    """The P stage: pi(a|s) by an ensemble of `p_members` neural classifiers from different initial weights,
    averaged in log space. Why: members reach the same loss (0.3139 +- 0.0001 on the benchmark world)
    with price responses 35% apart (the price sensitivity read off them: 0.25, 0.28, 0.34 for a true 0.30),
    and the scenarios' prices act through that response. Returns (ensemble, the members' mean per-step loss)."""
    PolicyStage, _, _ = _modules()
    states, inverse, _ = unique_rows(x)
    counts = np.zeros((len(states), len(ACTIONS)), dtype=np.float32)
    np.add.at(counts, (inverse, actions), 1.0)
    members, losses = [], []
    for k in range(config.p_members):
        torch.manual_seed(config.seed + 1000 * k)
        stage = PolicyStage(x.shape[1], config.hidden, config.lr)
        _fit(stage, (_tensor(states), _tensor(counts)), config.p_steps, config)
        members.append(stage.net)
        losses.append(stage.losses)
    return PolicyEnsemble(members).eval(), list(np.mean(losses, axis=0))


def log_policy(net, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return F.log_softmax(net(_tensor(x)), dim=-1).numpy()


def fit_anchor_q(x: np.ndarray, x_next: np.ndarray, log_pi0_next: np.ndarray, actions: np.ndarray,
                 config: FitConfig):
    """The Q stage: Q(s, a0) by fitted-Q iteration on the transitions that took the anchor action, and only
    those (the Bellman equation of a0 holds along a0's own transitions). The network reads the post-decision
    state of (s, a0) (`post_decision`): Q(s, a0) is an expectation over the month after not being a member,
    the same whatever plan s was on, so members who rarely leave mid-term get the value of those who did.
    Returns (net, losses); Q(s, a0) = net(post_decision(x, ANCHOR))."""
    _, AnchorQStage, _ = _modules()
    anchor = actions == ANCHOR
    if not anchor.any():
        raise MembershipError(f"no transition took the anchor action {ACTIONS[ANCHOR]!r}: Q(s, a0) cannot be fitted")
    torch.manual_seed(config.seed + 1)
    stage = AnchorQStage(x.shape[1] + 1, config.hidden, config.lr, config.beta, config.q_inner)
    pairs, _, weight = unique_rows(post_decision(x[anchor], ANCHOR), post_decision(x_next[anchor], ANCHOR),
                                   log_pi0_next[anchor])
    n = x.shape[1] + 1
    tensors = (_tensor(pairs[:, :n]), _tensor(pairs[:, n:2 * n]), _tensor(pairs[:, 2 * n]), _tensor(weight))
    _fit(stage, tensors, config.q_iterations * config.q_inner, config)
    return stage.net, stage.losses


def anchor_value(q_net, x: np.ndarray) -> np.ndarray:
    """(n,) Q(s, a0) of states with features x from the Q stage's network."""
    with torch.no_grad():
        return q_net(_tensor(post_decision(x, ANCHOR))).squeeze(-1).numpy()


@dataclass
class PQR:
    """A fitted Deep PQR: the three stages' networks and their loss curves."""
    policy: nn.Module
    q_anchor: nn.Module
    expectation: nn.Module
    beta: float
    losses: dict = field(default_factory=dict)

    def log_policy(self, x: np.ndarray) -> np.ndarray:
        return log_policy(self.policy, x)

    def q(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) Q(s, a) = Q(s, a0) + log pi(a|s) - log pi(a0|s)."""
        lp = self.log_policy(x)
        q0 = anchor_value(self.q_anchor, x)
        return q0[:, None] + lp - lp[:, [ANCHOR]]

    def reward(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) r(s, a) = Q(s, a) - beta * E[Q(s', a0) - log pi(a0|s') | s, a], the expectation the R stage's
        regression on the post-decision state of (s, a); the anchor's column is ~0."""
        q = self.q(x)
        with torch.no_grad():
            future = np.column_stack([self.expectation(_tensor(post_decision(x, a))).squeeze(-1).numpy()
                                      for a in range(len(ACTIONS))])
        return q - self.beta * future

    def simulator_reward(self, x: np.ndarray, P: list) -> np.ndarray:
        """(n, 3) the reward the counterfactuals re-solve with, on every state of a discrete space (x its
        features in state order, P its estimated transitions): the P and Q stages' Q(s, a) less beta times
        E[Q(s', a0) - log pi(a0|s') | s, a] under P itself instead of the R network's regression of it.

        Why: a re-solve under P compounds any mismatch between the R stage's expectation and P over the
        horizon (~1/(1 - beta) = 20 months at beta 0.95). The R network's regression error (~0.2-0.3 in
        utility, even distilled onto noiseless targets) moved the re-solved status-quo shares 5-9 pp away from
        the P stage's own policy. With the expectation under P, re-solving at the status quo gives the P
        stage's policy back exactly, and an error e(s) in Q(s, a0) enters as e(s) - beta P_a e, a
        potential-based shaping that changes no re-solved policy: scenario errors come from the P stage and
        the price and benefit values read off this reward (the Q stage matters there)."""
        return exact_reward(self.log_policy(x), P, self.beta, q0=anchor_value(self.q_anchor, x))


def check_identified(rows: pd.DataFrame, where: str) -> None:
    """The reward is identified only through the anchor: without a single anchor choice, say so and stop."""
    if not (rows["action"] == ACTIONS[ANCHOR]).any():
        raise MembershipError(f"{where}: the anchor action {ACTIONS[ANCHOR]!r} never occurs in {len(rows)} choices, "
                              f"so the reward is not identified; not fitting")


def fit_pqr(rows: pd.DataFrame, config: FitConfig, where: str = "transitions") -> PQR:
    """Fit P, Q and R on transitions (state columns, action, next_* state columns; a row without a next
    state, a customer's last month, trains the P stage only)."""
    check_identified(rows, where)
    x = features(rows)
    actions = action_codes(rows["action"])
    policy, p_losses = fit_policy(x, actions, config)
    has_next = rows["next_plan"].notna().to_numpy()
    if not has_next.any():
        raise MembershipError(f"{where}: no row has a next month, so no transition to fit Q and R on")
    x, actions = x[has_next], actions[has_next]
    x_next = features(next_state(rows[has_next]))
    log_pi0_next = log_policy(policy, x_next)[:, ANCHOR]
    if not (actions == ANCHOR).any():
        raise MembershipError(f"{where}: the anchor action {ACTIONS[ANCHOR]!r} occurs only in customers' last months, "
                              f"so no anchor transition identifies Q(s, a0); not fitting")
    q_net, q_losses = fit_anchor_q(x, x_next, log_pi0_next, actions, config)
    target = (anchor_value(q_net, x_next) - log_pi0_next).astype(np.float32)
    _, _, RegressionStage = _modules()
    torch.manual_seed(config.seed + 2)
    stage = RegressionStage(x.shape[1] + 1, config.hidden, config.lr)
    center, scale = float(target.mean()), float(target.std() or 1.0)     # the regression learns a standardised target
    rows_r, _, weight = unique_rows(post_decision(x, actions), (target - center) / scale)
    _fit(stage, (_tensor(rows_r[:, :-1]), _tensor(rows_r[:, -1]), _tensor(weight)), config.r_steps, config)
    return PQR(policy, q_net, Affine(stage.net, center, scale), config.beta,
               {"P": p_losses, "Q": q_losses, "R": stage.losses})


class Affine(nn.Module):
    """A network trained on a standardised target, answering in the target's own units."""

    def __init__(self, net: nn.Module, center: float, scale: float):
        super().__init__()
        self.net, self.center, self.scale = net, center, scale

    def forward(self, x):
        return self.net(x) * self.scale + self.center


def static_reward(pqr_or_policy, x: np.ndarray) -> np.ndarray:
    """The static logit's reward (beta = 0): the log-odds of each action against the anchor."""
    net = getattr(pqr_or_policy, "policy", pqr_or_policy)
    lp = log_policy(net, x)
    return lp - lp[:, [ANCHOR]]


def log_likelihood(log_pi: np.ndarray, actions: np.ndarray) -> float:
    """Mean log-likelihood per choice."""
    return float(log_pi[np.arange(len(actions)), actions].mean())



def exact_reward(log_pi: np.ndarray, P: list, beta: float, q0: np.ndarray | None = None) -> np.ndarray:
    """The Q and R stages solved exactly on a discrete state space with (estimated) transitions P, from the
    P stage's log-policy: Q(s,a0) = beta P_a0 [Q(., a0) - log pi(a0|.)] is one sparse linear solve, then
    r(s,a) = Q(s,a0) + log pi(a|s) - log pi(a0|s) - beta P_a [Q(., a0) - log pi(a0|.)] (the paper's estimator
    with known transitions; a comparison to the neural Q and R stages). With `q0` given (the Q stage's), only
    the R stage is solved exactly (PQR.simulator_reward)."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    n = log_pi.shape[0]
    if q0 is None:
        q0 = spsolve((sparse.identity(n) - beta * P[ANCHOR]).tocsc(), -beta * (P[ANCHOR] @ log_pi[:, ANCHOR]))
    future = q0 - log_pi[:, ANCHOR]
    return np.column_stack([q0 + log_pi[:, a] - log_pi[:, ANCHOR] - beta * (P[a] @ future) for a in range(len(ACTIONS))])
