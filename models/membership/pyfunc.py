"""The registered membership model: a fitted Deep PQR with the setting its counterfactuals need (price
cells, status quo, discount, estimated transitions). `predict` on state rows gives the estimated reward of
each plan (r_none is ~0: the anchor) and the log-probabilities of the policy re-solved under it."""
from __future__ import annotations

import pickle

import mlflow
import numpy as np
import pandas as pd


LAYOUT = 3    # 3: the P stage an ensemble; 2: Q and R networks on post-decision states; 1: on (s), (s, one-hot a)


class MembershipModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.model = load(context.artifacts["pqr"])
        with open(context.artifacts["setting"], "rb") as handle:
            self.setting = pickle.load(handle)

    def policy(self) -> np.ndarray:
        """The re-solved policy on every state of the setting's price cells (cached)."""
        if getattr(self, "_policy", None) is None:
            from echelon.membership_mdp import Space, features, soft_bellman, transitions

            space = Space(self.setting.cells)
            P = transitions(space, self.setting.dynamics)
            reward = self.model.simulator_reward(features(space.frame()), P)
            self._policy = soft_bellman(reward, P, self.setting.beta)[2]
        return self._policy

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from echelon.membership_mdp import ACTIONS, Space, features

        reward = self.model.reward(features(model_input))
        index = Space(self.setting.cells).locate(model_input)
        log_pi = np.log(np.clip(self.policy()[index], 1e-12, None))
        return pd.DataFrame({**{f"r_{a}": reward[:, i] for i, a in enumerate(ACTIONS)},
                             **{f"logp_{a}": log_pi[:, i] for i, a in enumerate(ACTIONS)}})


def requirements() -> list[str]:
    """The model's pip requirements pinned to what is installed: given explicitly, MLflow skips inferring
    them (a subprocess that loads the model: ~30 s of the fit step on the loaded machine)."""
    from importlib.metadata import PackageNotFoundError, version

    installed = {}
    for name in ("mlflow", "numpy", "pandas", "scipy", "torch", "lightning"):
        try:
            installed[name] = version(name)
        except PackageNotFoundError:
            pass
    return [f"{name}=={v}" for name, v in installed.items()]


def save(model, path, n_in: int, hidden: int) -> None:
    """The three stages' weights and what rebuilds them, in one torch file."""
    import torch

    torch.save({"layout": LAYOUT, "n_in": n_in, "hidden": hidden, "p_members": len(model.policy.members), "beta": model.beta, "policy": model.policy.state_dict(),
                "q_anchor": model.q_anchor.state_dict(), "expectation": model.expectation.net.state_dict(),
                "center": model.expectation.center, "scale": model.expectation.scale}, path)


def load(path):
    import torch

    from echelon.models.membership import pqr

    saved = torch.load(path, weights_only=False)
    if saved.get("layout") != LAYOUT:
        raise pqr.MembershipError(f"{path}: a membership model saved by an older layout than {LAYOUT}; "
                                  f"refit it (`echelon membership fit`)")
    n, h = saved["n_in"], saved["hidden"]
    policy = pqr.PolicyEnsemble([pqr.mlp(n, len(pqr.ACTIONS), h) for _ in range(saved["p_members"])])
    q_anchor, expectation = pqr.mlp(n + 1, 1, h), pqr.mlp(n + 1, 1, h)
    policy.load_state_dict(saved["policy"])
    q_anchor.load_state_dict(saved["q_anchor"])
    expectation.load_state_dict(saved["expectation"])
    return pqr.PQR(policy.eval(), q_anchor.eval(), pqr.Affine(expectation.eval(), saved["center"], saved["scale"]), saved["beta"])
