"""Shallow networks trained on the implicit-MF objective (a registered model).

Objective (Hu, Koren & Volinsky's, with a network f in place of the dot product):

    J = sum_(u,i) c_ui (p_ui - f(u, i))^2 + λ (sum_u |x_u|^2 + sum_i |y_i|^2)

with ``p_ui = 1[r_ui > 0]``, ``c_ui = 1 + α r̃_ui`` (``r̃ = log1p(plays)``) and ``x_u``, ``y_i`` the user and
artist embeddings. The sum over the unobserved pairs (c = 1, p = 0) is estimated by sampling: every
epoch draws ``negatives`` unobserved artists per observed pair of a user, uniformly among the artists
the user has not played, each standing in with weight ``(M - n_u) / (negatives n_u)`` (n_u = the user's
observed artists), so the epoch's sum is an unbiased estimate of J's data term. The L2 term is spread
over the rows' occurrences in the epoch's sample (weight 1 / occurrences each), so an epoch adds exactly
λ (|x_u|^2 + |y_i|^2) for every row it touches.

Architectures (``architecture``), all scoring a (user, artist) pair:

* ``dot``: ``x_u . y_i`` (IMF's model, trained by SGD instead of ALS);
* ``dot_bias``: ``x_u . y_i + b_u + b_i``;
* ``mlp``: ``[x_u, y_i]`` through three fully connected ReLU layers of ``hidden`` units, each followed by
  batch normalisation and the first by dropout, then a 1-unit linear layer, plus ``b_u + b_i``.

Training: Adam on mini-batches of the shuffled epoch sample (embedding rows updated lazily: only rows in
the batch, their moments too, as TensorFlow's LazyAdam), the batch loss being its share of J divided
by the batch size. Forward and backward passes are written out below in numpy; the lazy row updates are
a numba kernel.

Scoring. ``dot`` and ``dot_bias`` rank by a dot product: ``FactorSet`` holds users ``[x_u, 1]`` and
artists ``[y_i, b_i]`` (``b_u`` ranks nothing). ``mlp`` does not: its factor set holds the embeddings
(meaningful for artist-artist similarity, not for ranking) and its weights in ``network``;
:func:`score` (the model's ``score`` hook) gives the network's scores for a block of users, and every
ranking consumer must use it instead of the dot product.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

import numba
import numpy as np
import scipy.sparse as sp

from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import Model, Progress
from recsys_assets.core.sections import NonNegativeFloat, PositiveFloat, PositiveInt, Range, Section, Seed
from recsys_assets.core.threads import blas_threads

BN_EPS = 1e-3
BN_MOMENTUM = 0.99
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-7


@dataclass(frozen=True)
class NetsSettings(Section):
    """A shallow network on IMF's weighted squared loss with sampled unobserved pairs."""

    TABLE: ClassVar[str] = "nets"

    architecture: Literal["dot", "dot_bias", "mlp"] = "dot_bias"
    factors: PositiveInt = 32
    # Confidence of an observed pair: 1 + alpha * log1p(plays).
    alpha: NonNegativeFloat = 1.0
    regularization: NonNegativeFloat = 0.01
    negatives: PositiveInt = 4
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 1024
    learning_rate: PositiveFloat = 0.005
    hidden: PositiveInt = 10
    dropout: Annotated[float, Range(ge=0, lt=1)] = 0.5
    init_std: PositiveFloat = 0.01
    seed: Seed = 0


# ---------------------------------------------------------------------------------------------------
# Sampling.


@numba.njit(cache=True)
def _sample_negatives(indptr, indices, negatives, n_items, seed):  # pragma: no cover
    """For every stored entry of row u, ``negatives`` columns drawn uniformly among those row u does not
    store (rows sorted); returns (users, items) of the draws, in entry order."""
    np.random.seed(seed)
    nnz = indices.shape[0]
    users = np.empty(nnz * negatives, np.int32)
    items = np.empty(nnz * negatives, np.int32)
    t = 0
    for u in range(indptr.shape[0] - 1):
        start, stop = indptr[u], indptr[u + 1]
        if stop - start >= n_items:
            continue
        for _ in range((stop - start) * negatives):
            while True:
                j = np.random.randint(0, n_items)
                k = np.searchsorted(indices[start:stop], j)
                if k == stop - start or indices[start + k] != j:
                    break
            users[t], items[t] = u, j
            t += 1
    return users[:t], items[:t]


@dataclass
class Batch:
    """Samples: users, items, target p, weight w * c (per sample) and the L2 share of each sample's
    user and item row (1 / the row's occurrences in the epoch sample)."""

    users: np.ndarray
    items: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    user_share: np.ndarray
    item_share: np.ndarray

    def take(self, sel) -> Batch:
        return Batch(
            *(
                a[sel]
                for a in (self.users, self.items, self.target, self.weight, self.user_share, self.item_share)
            )
        )


def epoch_sample(matrix: sp.csr_matrix, settings: NetsSettings, seed: int) -> Batch:
    """The observed pairs (p = 1, weight 1 + α log1p(plays)) and one draw of unobserved pairs
    (p = 0, weight (M - n_u) / (negatives n_u)), with the L2 shares (module docstring)."""
    n_users, n_items = matrix.shape
    counts = np.diff(matrix.indptr)
    pos_users = np.repeat(np.arange(n_users, dtype=np.int32), counts)
    neg_users, neg_items = _sample_negatives(
        matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32), settings.negatives, n_items, seed
    )
    users = np.concatenate([pos_users, neg_users])
    items = np.concatenate([matrix.indices.astype(np.int32), neg_items])
    neg_weight = (n_items - counts[neg_users]) / (settings.negatives * counts[neg_users].astype(np.float64))
    weight = np.concatenate([1.0 + settings.alpha * np.log1p(matrix.data.astype(np.float64)), neg_weight])
    target = np.concatenate([np.ones(matrix.nnz), np.zeros(neg_users.size)])
    user_share = 1.0 / np.bincount(users, minlength=n_users)[users]
    item_share = 1.0 / np.bincount(items, minlength=n_items)[items]
    return Batch(users, items, target, weight, user_share, item_share)


# ---------------------------------------------------------------------------------------------------
# Parameters, forward and backward.


def init_params(
    settings: NetsSettings, n_users: int, n_items: int, rng: np.random.Generator, dtype=np.float32
) -> dict:
    """Embeddings ~ N(0, init_std), biases 0; dense layers He-initialised; batch norm at identity."""
    f, h = settings.factors, settings.hidden
    p = {
        "X": rng.standard_normal((n_users, f)) * settings.init_std,
        "Y": rng.standard_normal((n_items, f)) * settings.init_std,
        "bu": np.zeros(n_users),
        "bi": np.zeros(n_items),
    }
    if settings.architecture == "mlp":
        for layer, fan_in in ((1, 2 * f), (2, h), (3, h)):
            p[f"W{layer}"] = rng.standard_normal((fan_in, h)) * np.sqrt(2.0 / fan_in)
            p[f"c{layer}"] = np.zeros(h)
            p[f"gamma{layer}"] = np.ones(h)
            p[f"beta{layer}"] = np.zeros(h)
            p[f"mean{layer}"] = np.zeros(h)
            p[f"var{layer}"] = np.ones(h)
        p["W4"] = rng.standard_normal((h, 1)) * np.sqrt(1.0 / h)
        p["c4"] = np.zeros(1)
    return {k: v.astype(dtype) for k, v in p.items()}


def _mlp_forward(p: dict, x, y, train: bool, masks) -> tuple[np.ndarray, list]:
    """The network's output (before the biases) for embedding rows x, y; with the cache backward needs.
    ``train``: batch statistics (and dropout ``masks[0]`` when given), else the running averages."""
    a = np.concatenate([x, y], axis=1)
    cache = []
    for layer in (1, 2, 3):
        z = a @ p[f"W{layer}"] + p[f"c{layer}"]
        r = np.maximum(z, 0)
        if train:
            mean, var = r.mean(axis=0), r.var(axis=0)
        else:
            mean, var = p[f"mean{layer}"], p[f"var{layer}"]
        inv = 1.0 / np.sqrt(var + BN_EPS)
        norm = (r - mean) * inv
        out = p[f"gamma{layer}"] * norm + p[f"beta{layer}"]
        mask = masks[layer - 1] if (train and masks is not None) else None
        if mask is not None:
            out = out * mask
        cache.append((a, z, norm, inv, mean, var, mask))
        a = out
    return (a @ p["W4"])[:, 0] + p["c4"][0], cache + [a]


def _mlp_backward(p: dict, g_out: np.ndarray, cache: list) -> tuple[dict, np.ndarray]:
    """Gradients of the dense parameters and of the concatenated embedding input, given dJ/d(output)."""
    grads = {}
    last = cache[3]
    grads["W4"] = last.T @ g_out[:, None]
    grads["c4"] = np.array([g_out.sum()], dtype=g_out.dtype)
    g = g_out[:, None] * p["W4"][:, 0][None, :]
    for layer in (3, 2, 1):
        a, z, norm, inv, _, _, mask = cache[layer - 1]
        if mask is not None:
            g = g * mask
        grads[f"gamma{layer}"] = (g * norm).sum(axis=0)
        grads[f"beta{layer}"] = g.sum(axis=0)
        g_norm = g * p[f"gamma{layer}"]
        n = g.shape[0]
        # Batch norm backward: d r = inv/n (n g_norm - sum g_norm - norm sum(g_norm norm)).
        g_r = inv / n * (n * g_norm - g_norm.sum(axis=0) - norm * (g_norm * norm).sum(axis=0))
        g_z = g_r * (z > 0)
        grads[f"W{layer}"] = a.T @ g_z
        grads[f"c{layer}"] = g_z.sum(axis=0)
        g = g_z @ p[f"W{layer}"].T
    return grads, g


def forward(p: dict, batch: Batch, architecture: str, train: bool = False, masks=None):
    """Scores f(u, i) of the batch's pairs (and the cache for :func:`backward`)."""
    x, y = p["X"][batch.users], p["Y"][batch.items]
    if architecture == "mlp":
        out, cache = _mlp_forward(p, x, y, train, masks)
    else:
        out, cache = np.einsum("ij,ij->i", x, y), None
    if architecture != "dot":
        out = out + p["bu"][batch.users] + p["bi"][batch.items]
    return out, (x, y, cache)


def batch_objective(p: dict, batch: Batch, settings: NetsSettings, masks=None) -> tuple[float, np.ndarray]:
    """The batch's share of J: sum_k w_k (p_k - f_k)^2 + λ sum_k (share_u |x_u|^2 + share_i |y_i|^2),
    with batch-norm statistics of this batch; returns it and the scores."""
    out, (x, y, _) = forward(p, batch, settings.architecture, train=True, masks=masks)
    data = float((batch.weight * (batch.target - out) ** 2).sum())
    reg = settings.regularization * float(
        (batch.user_share * (x * x).sum(axis=1)).sum() + (batch.item_share * (y * y).sum(axis=1)).sum()
    )
    return data + reg, out


def backward(p: dict, batch: Batch, settings: NetsSettings, masks=None) -> tuple[float, dict]:
    """:func:`batch_objective` and its gradient: per-sample rows ``gX``, ``gY``, ``gbu``, ``gbi`` (to be
    summed per row) and dense gradients of the network's parameters."""
    arch = settings.architecture
    out, (x, y, cache) = forward(p, batch, arch, train=True, masks=masks)
    resid = batch.target - out
    g_out = -2.0 * batch.weight * resid
    lam = settings.regularization
    grads: dict = {}
    if arch == "mlp":
        grads, g_in = _mlp_backward(p, g_out.astype(x.dtype), cache)
        f = x.shape[1]
        g_x, g_y = g_in[:, :f], g_in[:, f:]
    else:
        g_x, g_y = g_out[:, None] * y, g_out[:, None] * x
    grads["gX"] = g_x + 2.0 * lam * batch.user_share[:, None] * x
    grads["gY"] = g_y + 2.0 * lam * batch.item_share[:, None] * y
    if arch != "dot":
        grads["gbu"], grads["gbi"] = g_out, g_out
    reg = lam * float((batch.user_share * (x * x).sum(1)).sum() + (batch.item_share * (y * y).sum(1)).sum())
    return float((batch.weight * resid**2).sum()) + reg, grads


# ---------------------------------------------------------------------------------------------------
# Adam.


@numba.njit(cache=True)
def _lazy_adam(param, m, v, rows, grads, rate, step):  # pragma: no cover
    """Adam on the rows ``rows`` of ``param`` only, ``grads[k]`` belonging to ``rows[k]`` (rows may
    repeat: their gradients are summed first). ``param`` is 2-D (n, f)."""
    order = np.argsort(rows, kind="mergesort")
    f = param.shape[1]
    total = np.zeros(f, np.float64)
    c1, c2 = 1.0 - BETA1**step, 1.0 - BETA2**step
    k = 0
    while k < order.shape[0]:
        r = rows[order[k]]
        total[:] = 0.0
        while k < order.shape[0] and rows[order[k]] == r:
            for j in range(f):
                total[j] += grads[order[k], j]
            k += 1
        for j in range(f):
            m[r, j] = BETA1 * m[r, j] + (1 - BETA1) * total[j]
            v[r, j] = BETA2 * v[r, j] + (1 - BETA2) * total[j] * total[j]
            param[r, j] -= rate * (m[r, j] / c1) / (np.sqrt(v[r, j] / c2) + ADAM_EPS)


class _Adam:
    def __init__(self, params: dict, rate: float):
        self.p, self.rate, self.step = params, rate, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def update(self, grads: dict, batch: Batch, scale: float) -> None:
        self.step += 1
        for name, rows, key in (("X", batch.users, "gX"), ("Y", batch.items, "gY")):
            _lazy_adam(
                self.p[name], self.m[name], self.v[name], rows, grads[key] * scale, self.rate, self.step
            )
        for name, rows, key in (("bu", batch.users, "gbu"), ("bi", batch.items, "gbi")):
            if key in grads:
                g = (grads[key] * scale)[:, None]
                _lazy_adam(
                    self.p[name][:, None],
                    self.m[name][:, None],
                    self.v[name][:, None],
                    rows,
                    g,
                    self.rate,
                    self.step,
                )
        c1, c2 = 1.0 - BETA1**self.step, 1.0 - BETA2**self.step
        for name, g in grads.items():
            if name in self.p:
                g = g * scale
                self.m[name] = BETA1 * self.m[name] + (1 - BETA1) * g
                self.v[name] = BETA2 * self.v[name] + (1 - BETA2) * g * g
                self.p[name] -= (
                    self.rate * (self.m[name] / c1) / (np.sqrt(self.v[name] / c2) + ADAM_EPS)
                ).astype(self.p[name].dtype)


# ---------------------------------------------------------------------------------------------------
# Fit and score.


def _update_running_stats(p: dict, masks, batch: Batch, settings: NetsSettings) -> None:
    _, (_, _, cache) = forward(p, batch, "mlp", train=True, masks=masks)
    for layer in (1, 2, 3):
        mean, var = cache[layer - 1][4], cache[layer - 1][5]
        p[f"mean{layer}"] = (BN_MOMENTUM * p[f"mean{layer}"] + (1 - BN_MOMENTUM) * mean).astype(np.float32)
        p[f"var{layer}"] = (BN_MOMENTUM * p[f"var{layer}"] + (1 - BN_MOMENTUM) * var).astype(np.float32)


def fit(
    matrix: sp.csr_matrix, settings: NetsSettings, *, threads: int, progress: Progress | None = None
) -> FactorSet:
    """Train the chosen architecture on ``matrix`` (users x artists play counts, CSR) for ``epochs``
    epochs; ``loss`` per epoch is the epoch's estimate of J divided by the number of observed pairs."""
    csr = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    csr.eliminate_zeros()
    csr.sort_indices()
    n_users, n_items = csr.shape
    rng = np.random.default_rng(settings.seed)
    p = init_params(settings, n_users, n_items, rng)
    adam = _Adam({k: v for k, v in p.items() if not k.startswith(("mean", "var"))}, settings.learning_rate)
    losses, seconds = [], []
    keep = 1.0 - settings.dropout
    with blas_threads(threads):
        for epoch in range(settings.epochs):
            _epoch(csr, p, adam, settings, rng, keep, losses, seconds)
            if progress is not None:
                progress(epoch + 1, settings.epochs, losses[-1], seconds[-1])
    return _factor_set(p, settings, losses, seconds)


def _epoch(csr, p, adam, settings, rng, keep, losses, seconds) -> None:
    """One epoch: a fresh sample of unobserved pairs, shuffled, in mini-batches."""
    mlp = settings.architecture == "mlp"
    start = time.perf_counter()
    sample = epoch_sample(csr, settings, int(rng.integers(2**31 - 1)))
    order = rng.permutation(sample.users.size)
    total = 0.0
    for b in range(0, order.size, settings.batch_size):
        batch = sample.take(order[b : b + settings.batch_size])
        masks = None
        if mlp and settings.dropout > 0:
            mask = (rng.random((batch.users.size, settings.hidden)) < keep).astype(np.float32) / np.float32(
                keep
            )
            masks = [mask, None, None]
        value, grads = backward(p, batch, settings, masks)
        total += value
        adam.update(grads, batch, 1.0 / batch.users.size)
        if mlp:
            _update_running_stats(p, masks, batch, settings)
    seconds.append(time.perf_counter() - start)
    losses.append(total / max(1, csr.nnz))


def _factor_set(p: dict, settings: NetsSettings, losses, seconds) -> FactorSet:
    n_users = p["X"].shape[0]
    if settings.architecture in ("dot", "mlp"):
        users, items = p["X"], p["Y"]
    else:
        users = np.hstack([p["X"], np.ones((n_users, 1), np.float32)])
        items = np.hstack([p["Y"], p["bi"][:, None]])
    network = {k: v for k, v in p.items() if k not in ("X", "Y")} if settings.architecture == "mlp" else {}
    return FactorSet(
        model="nets",
        user_factors=np.ascontiguousarray(users),
        item_factors=np.ascontiguousarray(items),
        loss=losses,
        seconds=seconds,
        item_bias=None if settings.architecture == "dot" else p["bi"].astype(np.float64),
        user_bias=None if settings.architecture == "dot" else p["bu"].astype(np.float64),
        network=network,
    )


def score(factors: FactorSet, users: np.ndarray) -> np.ndarray:
    """Scores of every artist for each user in ``users`` (int array, shape (B,)): (B, n_items) float32.
    The network's output for ``mlp`` (inference mode: running batch-norm statistics, no dropout), the
    factors' dot product otherwise."""
    users = np.asarray(users)
    if not factors.network:
        return factors.user_factors[users] @ factors.item_factors.T
    p = dict(factors.network)
    f = factors.user_factors.shape[1]
    p["X"], p["Y"] = factors.user_factors, factors.item_factors
    n_items = factors.item_factors.shape[0]
    out = np.empty((users.size, n_items), np.float32)
    items = np.arange(n_items)
    for row, u in enumerate(users):
        x = np.broadcast_to(p["X"][u], (n_items, f))
        value, _ = _mlp_forward(p, x, p["Y"], False, None)
        out[row] = value + p["bu"][u] + p["bi"][items]
    return out


MODEL = Model(
    name="nets",
    description="Shallow networks (dot, dot + biases, or an MLP with batch norm and dropout) on the implicit-MF "
    "objective with sampled unobserved pairs, trained by Adam.",
    settings=NetsSettings,
    fit=fit,
    input="plays",
    kinds=("numpy",),
    score=score,
)
