"""Probabilistic matrix factorization with biases, fit to scaled play counts (a registered model).

Model. For an observed pair (user u, artist i) with scaled value ``r_ui`` (see :mod:`.values`)

    r̂_ui = b + b_u + b_i + x_u . y_i

with ``b`` the mean of the training values (fixed, not learned) and ``b_u``, ``b_i``, ``x_u``, ``y_i``
learned by minimising over the observed training pairs Ω

    L = (1/|Ω|) sum_(u,i) in Ω  [ (r̂_ui - r_ui)^2 + λ (|x_u|^2 + |y_i|^2 + b_u^2 + b_i^2) ]

(mean squared error plus L2 weight decay on every parameter a pair touches: ``prior = "pair"``), or, with
``prior = "row"``, the MAP objective of Salakhutdinov & Mnih's PMF, whose Gaussian priors count each
user and artist once:

    L = (1/|Ω|) [ sum_(u,i) in Ω (r̂_ui - r_ui)^2 + λ sum_u (|x_u|^2 + b_u^2) + λ sum_i (|y_i|^2 + b_i^2) ]

(SGD spreads a row's term over its training pairs, ``λ / n_row`` each). Per pair, an artist heard by
few users keeps a bias near their mean value whatever λ; per row, its bias shrinks toward 0 like
``n / (n + λ)``, so ranking by r̂ no longer favours rarely played artists. Optimiser: mini-batch SGD
over the observed pairs, shuffled once, visited in a fresh random order of batches every epoch; a
batch's gradients are all computed from the parameters at the batch's start, then applied, step =
rate x the sum of the batch's per-pair gradients (so the rate is per observation and does not depend on
the batch size). With T threads, each runs 1/T of the epoch's batches at the same time on shared
parameters (Hogwild): one thread reproduces its factors exactly, more threads do not.

Schedule (after the PyTorch write-up this model comes from): a learning-rate range test (the rate grows
geometrically every batch from a fresh start; the loss is lowest, smoothed, at the largest rate before
it rises, and training uses a tenth of that rate, as fast.ai's rule has it), an optional grid over the embedding size (a few epochs
each, the lowest validation MSE wins), then groups of ``epochs_per_rate`` epochs with the rate halved
after each group, until a group fails to lower the validation MSE (the best parameters are kept). The
validation pairs are ``validation_fraction`` of the training input's observed pairs, never trained on.

Unobserved pairs (``unobserved`` = k > 0, a departure from the write-up). Fitted to the observed values
only, r̂ says how much a user plays an artist *if* they play it, nothing about whether they would: it
ranks rarely played artists with a few high counts first (HetRec p@10 0.02, below popularity). As the
implicit-feedback write-ups do, every epoch then also fits k pairs per observed pair with value 0: for
each observed (u, i), k artists u has not played, uniform among them, drawn afresh each epoch by hashing
(epoch seed, pair index, draw) so that the draws do not depend on the threads. The loss above then runs
over Ω and the epoch's draws (its mean over both), ``b`` is the mean of that sample's values, and the
validation set is the held-out pairs plus k fixed draws for each. ``unobserved = 0`` is the write-up's
model exactly.

Users with fewer than ``min_user_plays`` observed artists are left out of the fit: their ``x_u`` and
``b_u`` stay zero, so they are predicted ``b + b_i`` (ranked by item bias).

For ranking, ``FactorSet`` holds users ``[x_u, 1]`` and items ``[y_i, b_i]`` (the item bias folded into
the factors) and ``user_offset = b + b_u``, so ``predict`` is r̂ and the dot product ranks as r̂ does.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numba
import numpy as np
import scipy.sparse as sp
from numba import prange

from recsys_assets.core.als import _permuted, _popularity_orders
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import Model, Progress
from recsys_assets.core.models.values import (
    Scaling,
    observed_pairs,
    scale_values,
    scaled_by_settings,
    validation_mask,
)
from recsys_assets.core.sections import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    Section,
    Seed,
)
from recsys_assets.core.threads import numba_threads

# The range test: rates from RANGE_LOW to RANGE_HIGH, geometrically, over this many batches.
RANGE_BATCHES = 120
RANGE_LOW, RANGE_HIGH = 1e-4, 10.0
# The range test's chosen rate is this fraction of the rate at the smoothed loss minimum: at the
# minimum itself the sweep is already on the edge of divergence (a whole epoch there diverged on HetRec).
RANGE_BACKOFF = 0.1
# A group of epochs "improves" the validation MSE when it lowers it by more than this fraction.
MIN_IMPROVEMENT = 1e-4


@dataclass(frozen=True)
class IntList:
    """A string of comma-separated positive integers (``"20,30,40"``), or ``""`` for none."""

    def admits(self, value: Any) -> bool:
        try:
            return all(int(part) > 0 for part in value.split(",")) if value.strip() else True
        except ValueError:
            return False

    def describe(self, kind: str) -> str:
        return 'comma-separated positive integers such as "20,30,40,50,60", or "" (no search)'


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")] if text.strip() else []


@dataclass(frozen=True)
class PmfSettings(Section):
    """PMF with user, item and global biases on scaled play counts."""

    TABLE: ClassVar[str] = "pmf"

    factors: PositiveInt = 40
    # Embedding sizes tried for ``grid_epochs`` epochs each before the real fit ("" = use ``factors``).
    factors_grid: Annotated[str, IntList()] = ""
    grid_epochs: PositiveInt = 3
    scaling: Scaling = "log1p"
    # Users with fewer observed artists are not fitted (the write-up used 5; with unobserved pairs
    # sampled, fitting every user ranks better: validation p@10 0.125 at 0 against 0.115 at 5 on HetRec).
    min_user_plays: NonNegativeInt = 0
    regularization: NonNegativeFloat = 0.02
    # How the L2 term counts a row: "pair" (once per observed pair it occurs in, as in Funk-style SGD)
    # or "row" (once per user / artist, the Gaussian prior of Salakhutdinov & Mnih's PMF).
    prior: Literal["pair", "row"] = "pair"
    learning_rate: Annotated[float, Range(gt=0, le=100, special=(0.0,), note="0 = a range test chooses")] = (
        0.0
    )
    batch_size: PositiveInt = 1024
    epochs_per_rate: PositiveInt = 3
    max_epochs: PositiveInt = 30
    validation_fraction: Annotated[float, Range(gt=0, lt=0.5)] = 0.05
    # Unobserved (user, artist) pairs sampled per observed pair every epoch and fitted as value 0 (a
    # departure from the write-up, which fits the observed values only: 0 = its model, which ranks
    # below popularity on HetRec; see the README).
    unobserved: NonNegativeInt = 3
    init_std: PositiveFloat = 0.01
    seed: Seed = 0


# ---------------------------------------------------------------------------------------------------
# Kernels.


@numba.njit(cache=True, inline="always")
def _hash(key):  # pragma: no cover
    """splitmix64's finaliser: a well-mixed uint64 from a uint64."""
    z = key + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _unobserved_item(u, key, indptr, indices, n_items):  # pragma: no cover
    """An item that row ``u`` of the CSR pattern (sorted indices) does not store, uniform among them,
    drawn by hashing the uint64 ``key`` (the same key gives the same item on every thread); -1 when
    the row stores every item or 64 draws all hit stored items."""
    start, stop = indptr[u], indptr[u + 1]
    if stop - start >= n_items:
        return -1
    for attempt in range(64):
        j = np.int64(_hash(key * np.uint64(64) + np.uint64(attempt)) % np.uint64(n_items))
        k = np.searchsorted(indices[start:stop], j)
        if k == stop - start or indices[start + k] != j:
            return j
    return -1


@numba.njit(cache=True)
def _unobserved_items(users, indptr, indices, n_items, per_pair, seed):  # pragma: no cover
    """``per_pair`` unobserved items for each of ``users`` (the draws of :func:`_unobserved_item`,
    pair p's r-th with key ``hash(seed) + p * per_pair + r``), ``(len(users) * per_pair,)``, -1 = none."""
    out = np.empty(users.shape[0] * per_pair, np.int64)
    base = _hash(np.uint64(seed))
    for p in range(users.shape[0]):
        for r in range(per_pair):
            key = base + np.uint64(p * per_pair + r)
            out[p * per_pair + r] = _unobserved_item(users[p], key, indptr, indices, n_items)
    return out


@numba.njit(cache=True, fastmath=True)
def _batch_gradients(
    users, items, values, start, stop, X, Y, bu, bi, mu, lam_u, lam_i, gX, gY, gb, loss
):  # pragma: no cover
    """Per-pair gradients of the pair loss for pairs ``start:stop``, from the current parameters:
    ``gX[k]``, ``gY[k]``, ``gb[k] = (d/db_u, d/db_i)``, ``loss[k] = (pair loss, squared error)``.
    The pair loss is ``e^2 + lam_u[u] (|x_u|^2 + b_u^2) + lam_i[i] (|y_i|^2 + b_i^2)``."""
    f = X.shape[1]
    two = np.float32(2.0)  # float32 arithmetic on float32 parameters (no float64 round trips)
    for k in range(stop - start):
        p = start + k
        u, i = users[p], items[p]
        lu, li = lam_u[u], lam_i[i]
        e = mu + bu[u] + bi[i] - values[p]
        for j in range(f):
            e += X[u, j] * Y[i, j]
        norm_u, norm_i = bu[u] * bu[u], bi[i] * bi[i]
        for j in range(f):
            x, y = X[u, j], Y[i, j]
            gX[k, j] = two * (e * y + lu * x)
            gY[k, j] = two * (e * x + li * y)
            norm_u += x * x
            norm_i += y * y
        gb[k, 0] = two * (e + lu * bu[u])
        gb[k, 1] = two * (e + li * bi[i])
        loss[k, 0] = e * e + lu * norm_u + li * norm_i
        loss[k, 1] = e * e


@numba.njit(cache=True, fastmath=True)
def _apply(users, items, start, stop, X, Y, bu, bi, gX, gY, gb, rate):  # pragma: no cover
    """Subtract ``rate`` x the per-pair gradients, in pair order."""
    f = X.shape[1]
    for k in range(stop - start):
        u, i = users[start + k], items[start + k]
        for j in range(f):
            X[u, j] -= rate * gX[k, j]
            Y[i, j] -= rate * gY[k, j]
        bu[u] -= rate * gb[k, 0]
        bi[i] -= rate * gb[k, 1]


@numba.njit(cache=True, fastmath=True, parallel=True)
def _run_batches(
    users,
    items,
    values,
    order,
    batch_size,
    X,
    Y,
    bu,
    bi,
    mu,
    lam_u,
    lam_i,
    rates,
    out,
    parts,
    indptr,
    indices,
    per_pair,
    seed,
):  # pragma: no cover
    """SGD over the batches ``order`` (batch b = pairs ``b*batch_size`` on), batch t at ``rates[t]``;
    ``out[t] = (mean pair loss, mean squared error)`` of batch t's samples before its step. A batch's
    samples are its pairs, each followed by ``per_pair`` unobserved items of the pair's user (value 0,
    drawn by :func:`_unobserved_item` from ``seed`` and the pair's index, so the draws do not depend
    on the threads; ``indptr``/``indices``: the pattern they avoid). ``parts`` threads each run a
    contiguous share of ``order`` at the same time, sharing the parameters without locks (Hogwild, Niu
    et al. 2011); with ``parts = 1`` the run is sequential and exactly reproducible."""
    n, f, n_batches, n_items = users.shape[0], X.shape[1], order.shape[0], Y.shape[0]
    size = batch_size * (1 + per_pair)
    base = _hash(np.uint64(seed))
    for part in prange(parts):
        gX = np.empty((size, f), X.dtype)
        gY = np.empty((size, f), X.dtype)
        gb = np.empty((size, 2), X.dtype)
        loss = np.empty((size, 2), np.float64)
        su = np.empty(size, users.dtype)
        si = np.empty(size, items.dtype)
        sv = np.zeros(size, values.dtype)
        for t in range(part * n_batches // parts, (part + 1) * n_batches // parts):
            start = order[t] * batch_size
            stop = min(start + batch_size, n)
            m = 0
            for p in range(start, stop):
                u = users[p]
                su[m], si[m], sv[m] = u, items[p], values[p]
                m += 1
                for r in range(per_pair):
                    j = _unobserved_item(u, base + np.uint64(p * per_pair + r), indptr, indices, n_items)
                    if j >= 0:
                        su[m], si[m], sv[m] = u, j, 0.0
                        m += 1
            _batch_gradients(su, si, sv, 0, m, X, Y, bu, bi, mu, lam_u, lam_i, gX, gY, gb, loss)
            _apply(su, si, 0, m, X, Y, bu, bi, gX, gY, gb, rates[t])
            total, sq = 0.0, 0.0
            for k in range(m):
                total += loss[k, 0]
                sq += loss[k, 1]
            out[t, 0] = total / m
            out[t, 1] = sq / m


@numba.njit(cache=True, fastmath=True, parallel=True)
def _squared_errors(users, items, values, X, Y, bu, bi, mu, out):  # pragma: no cover
    for p in prange(users.shape[0]):
        u, i = users[p], items[p]
        e = mu + bu[u] + bi[i] - values[p]
        for j in range(X.shape[1]):
            e += X[u, j] * Y[i, j]
        out[p] = e * e


# ---------------------------------------------------------------------------------------------------
# Training.


@dataclass
class _Params:
    X: np.ndarray
    Y: np.ndarray
    bu: np.ndarray
    bi: np.ndarray

    def copy(self) -> _Params:
        return _Params(self.X.copy(), self.Y.copy(), self.bu.copy(), self.bi.copy())


@dataclass
class _Pairs:
    users: np.ndarray
    items: np.ndarray
    values: np.ndarray


class _Trainer:
    """The data, the fixed global bias and the settings of one fit; runs batches and epochs.
    ``pattern``: the scaled matrix's CSR pattern, which sampled unobserved pairs avoid."""

    def __init__(
        self,
        train: _Pairs,
        valid: _Pairs,
        pattern: sp.csr_matrix,
        settings: PmfSettings,
        seed: int,
        parts: int,
    ):
        self.train, self.valid, self.shape, self.s, self.parts = train, valid, pattern.shape, settings, parts
        self.indptr, self.indices = pattern.indptr.astype(np.int64), pattern.indices.astype(np.int32)
        k = settings.unobserved
        # b: the mean target of an epoch's samples (the observed values and k zeros per pair).
        total = float(train.values.sum(dtype=np.float64))
        self.mu = np.float32(total / (train.values.size * (1 + k))) if train.values.size else np.float32(0.0)
        self.n_batches = max(1, math.ceil(train.users.size / settings.batch_size))
        self.rng = np.random.default_rng(seed)
        # Users the fit never sees (filtered out) keep zero vectors, not their random start.
        user_counts = np.bincount(train.users, minlength=self.shape[0])
        item_counts = np.bincount(train.items, minlength=self.shape[1])
        self.unseen_users = user_counts == 0
        # A row's expected occurrences in an epoch's samples: a user's k unobserved pairs per observed
        # one; an artist's expected draws among all k |Ω| unobserved pairs (uniform over artists).
        self.lam_u = _pair_shares(settings.regularization, settings.prior, user_counts * (1 + k))
        self.lam_i = _pair_shares(
            settings.regularization, settings.prior, item_counts + k * train.users.size / self.shape[1]
        )
        self.valid = _with_unobserved(valid, self.indptr, self.indices, self.shape[1], k, seed)

    def init(self, factors: int) -> _Params:
        std = np.float32(self.s.init_std)
        n_users, n_items = self.shape
        params = _Params(
            self.rng.standard_normal((n_users, factors), dtype=np.float32) * std,
            self.rng.standard_normal((n_items, factors), dtype=np.float32) * std,
            np.zeros(n_users, np.float32),
            np.zeros(n_items, np.float32),
        )
        params.X[self.unseen_users] = 0.0
        return params

    def batches(self, order: np.ndarray, params: _Params, rates: np.ndarray, parts: int) -> np.ndarray:
        out = np.empty((order.size, 2), np.float64)
        t = self.train
        _run_batches(
            t.users, t.items, t.values, order.astype(np.int64), self.s.batch_size,
            params.X, params.Y, params.bu, params.bi, self.mu, self.lam_u, self.lam_i,
            rates.astype(params.X.dtype), out, parts,
            self.indptr, self.indices, self.s.unobserved, int(self.rng.integers(2**62)),
        )  # fmt: skip
        return out

    def epoch(self, params: _Params, rate: float) -> tuple[float, float]:
        """One epoch at ``rate``: (mean pair loss, mean squared error) over its batches."""
        order = self.rng.permutation(self.n_batches)
        out = self.batches(order, params, np.full(order.size, rate), self.parts)
        # Weighted by pairs per batch (a batch's unobserved draws are proportional to its pairs).
        sizes = np.minimum(self.s.batch_size, self.train.users.size - order * self.s.batch_size)
        return float(out[:, 0] @ sizes / sizes.sum()), float(out[:, 1] @ sizes / sizes.sum())

    def validation_mse(self, params: _Params) -> float:
        v = self.valid
        out = np.empty(v.users.size, np.float64)
        _squared_errors(v.users, v.items, v.values, params.X, params.Y, params.bu, params.bi, self.mu, out)
        return float(out.sum() / max(1, out.size))

    def range_test(self) -> tuple[float, dict[str, list[float]]]:
        """The rate at the lowest smoothed batch loss of a geometric rate sweep, and the sweep."""
        params = self.init(self.s.factors)
        rates = np.geomspace(RANGE_LOW, RANGE_HIGH, RANGE_BATCHES)
        order = np.arange(RANGE_BATCHES) % self.n_batches
        with np.errstate(all="ignore"):
            # One thread: the rate must grow in time, batch after batch.
            raw = self.batches(order, params, rates, 1)[:, 0]
        smoothed, average = [], 0.0
        for t, value in enumerate(raw):
            average = 0.9 * average + 0.1 * value
            smoothed.append(average / (1.0 - 0.9 ** (t + 1)))
        curve = np.array(smoothed)
        finite = np.isfinite(curve)
        # Past the first non-finite batch the sweep has diverged: only the prefix counts.
        last = int(np.argmin(finite)) if not finite.all() else curve.size
        best = int(np.argmin(curve[:last])) if last > 0 else 0
        return float(rates[best]) * RANGE_BACKOFF, {
            "x": rates.tolist(),
            "y": [v if math.isfinite(v) else None for v in curve],
        }


def _pair_shares(lam: float, prior: str, counts: np.ndarray) -> np.ndarray:
    """Each row's L2 weight per training sample it occurs in: ``lam`` (``prior = "pair"``), or its share
    ``lam / count`` (``"row"``: the row's samples add up to one ``lam |row|^2``); float32."""
    if prior == "pair":
        return np.full(counts.size, lam, np.float32)
    return (lam / np.maximum(counts, 1)).astype(np.float32)


def _with_unobserved(pairs: _Pairs, indptr, indices, n_items: int, per_pair: int, seed: int) -> _Pairs:
    """``pairs`` plus ``per_pair`` unobserved pairs of each pair's user, value 0, drawn once: the
    validation set of the objective with sampled unobserved pairs (``pairs`` itself when 0)."""
    if per_pair == 0 or pairs.users.size == 0:
        return pairs
    drawn = _unobserved_items(pairs.users, indptr, indices, n_items, per_pair, seed)
    users = np.repeat(pairs.users, per_pair)
    found = drawn >= 0
    return _Pairs(
        np.concatenate([pairs.users, users[found]]),
        np.concatenate([pairs.items, drawn[found].astype(np.int32)]),
        np.concatenate([pairs.values, np.zeros(int(found.sum()), np.float32)]),
    )


def _split_pairs(
    scaled: sp.csr_matrix, settings: PmfSettings, rng: np.random.Generator
) -> tuple[_Pairs, _Pairs]:
    users, items, values = observed_pairs(scaled)
    counts = np.diff(scaled.indptr)
    keep = counts[users] >= settings.min_user_plays
    users, items, values = users[keep], items[keep], values[keep]
    held = validation_mask(users.size, settings.validation_fraction, rng)
    train = ~held
    order = _shuffled_in_chunks(users[train], settings.batch_size, scaled.shape[0], rng)
    return (
        _Pairs(users[train][order], items[train][order], values[train][order]),
        _Pairs(users[held], items[held], values[held]),
    )


def _shuffled_in_chunks(users: np.ndarray, batch_size: int, n_users: int, rng: np.random.Generator):
    """The order the training pairs are stored (and cut into batches) in: a uniform shuffle, then each
    run of ``c = max(1, round(n_users / batch_size))`` consecutive batches sorted by user (stable).

    A chunk then holds about as many pairs as there are users, about ``n_u / mean degree`` of user u's,
    so a batch still draws its pairs from all over the matrix, but consecutive pairs read neighbouring
    user rows (users are numbered by activity) instead of jumping across the whole user table: at 360K
    users an epoch reads X in address order, fewer cache and TLB misses than shuffled. A user's pairs in one chunk share a batch: an active user's step sums several pair
    gradients, as would a larger batch. On small data (``c = 1``) it is a per-batch sort, which
    changes only the order a batch's gradients are summed in (all come from the parameters at its start)."""
    order = rng.permutation(users.size)
    chunk = max(1, round(n_users / batch_size)) * batch_size
    for start in range(0, order.size, chunk):
        part = order[start : start + chunk]
        order[start : start + chunk] = part[np.argsort(users[part], kind="stable")]
    return order


def fit(
    matrix: sp.csr_matrix, settings: PmfSettings, *, threads: int, progress: Progress | None = None
) -> FactorSet:
    """PMF with biases on the scaled play counts of ``matrix`` (users x artists CSR), with the schedule
    of the module docstring. Returns the factor set described there."""
    rng = np.random.default_rng(settings.seed)
    scaled = scale_values(matrix, settings.scaling)
    # Fit with users and artists numbered by decreasing popularity: the rows most pairs touch share
    # cache lines and pages (as the ALS fit does); the factors are returned in the caller's order.
    user_order, item_order = _popularity_orders(scaled)
    scaled = _permuted(scaled, user_order, item_order)
    train, valid = _split_pairs(scaled, settings, rng)
    curves: dict[str, dict[str, list[float]]] = {}
    with numba_threads(threads) as n_threads:
        trainer = _Trainer(train, valid, scaled, settings, settings.seed + 1, n_threads)
        rate = settings.learning_rate
        if rate == 0.0:
            rate, curves["lr_range"] = trainer.range_test()
        factors = settings.factors
        grid = int_list(settings.factors_grid)
        if grid:
            scores = []
            for candidate in grid:
                params = trainer.init(candidate)
                for _ in range(settings.grid_epochs):
                    trainer.epoch(params, rate)
                scores.append(trainer.validation_mse(params))
            finite = [s if math.isfinite(s) else math.inf for s in scores]
            factors = grid[int(np.argmin(finite))]
            curves["factors_grid"] = {"x": [float(c) for c in grid], "y": finite}
        params = trainer.init(factors)
        best, best_params = math.inf, params.copy()
        losses: list[float] = []
        seconds: list[float] = []
        components: dict[str, list[float]] = {"train_mse": [], "validation_mse": [], "learning_rate": []}
        epoch = 0
        while epoch < settings.max_epochs:
            for _ in range(min(settings.epochs_per_rate, settings.max_epochs - epoch)):
                start = time.perf_counter()
                loss, mse = trainer.epoch(params, rate)
                seconds.append(time.perf_counter() - start)
                losses.append(loss)
                components["train_mse"].append(mse)
                components["validation_mse"].append(trainer.validation_mse(params))
                components["learning_rate"].append(rate)
                epoch += 1
                if progress is not None:
                    progress(epoch, settings.max_epochs, loss, seconds[-1])
            current = components["validation_mse"][-1]
            if not current < best * (1.0 - MIN_IMPROVEMENT):
                break
            best, best_params = current, params.copy()
            rate /= 2.0
    params = _Params(
        *(np.empty_like(a) for a in (best_params.X, best_params.Y, best_params.bu, best_params.bi))
    )
    params.X[user_order], params.bu[user_order] = best_params.X, best_params.bu
    params.Y[item_order], params.bi[item_order] = best_params.Y, best_params.bi
    return _factor_set(params, trainer.mu, losses, seconds, components, curves)


def _factor_set(params, mu, losses, seconds, components, curves) -> FactorSet:
    n_users = params.X.shape[0]
    return FactorSet(
        model="pmf",
        user_factors=np.hstack([params.X, np.ones((n_users, 1), np.float32)]),
        item_factors=np.hstack([params.Y, params.bi[:, None]]),
        loss=losses,
        seconds=seconds,
        user_offset=(mu + params.bu).astype(np.float64),
        item_bias=params.bi.astype(np.float64),
        user_bias=params.bu.astype(np.float64),
        loss_components=components,
        curves=curves,
    )


MODEL = Model(
    name="pmf",
    description="Probabilistic MF with global, user and item biases on scaled play counts (mini-batch SGD, "
    "learning-rate range test, step decay on a validation split).",
    settings=PmfSettings,
    fit=fit,
    input="plays",
    kinds=("numba",),
    predicts_values=True,
    value_transform=scaled_by_settings,
)
