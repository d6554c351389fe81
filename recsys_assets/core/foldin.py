"""Answers from stored factors without retraining: artist arithmetic, new listeners, explanations.

* :func:`parse_like` / :func:`like`: ``"Radiohead + Daft Punk - Coldplay"`` or ``"0.5*Muse + Björk"`` ->
  the weighted sum of the named artists' unit vectors -> the artists nearest to it by cosine, the query
  artists left out. Unit vectors so that one popular artist's long vector does not drown the others.
* :func:`fold_in_als`: a new listener's ALS vector from their row of the weighted matrix, solved exactly
  against the fixed item factors with the confidence and regularisation of the ALS fit (the user half
  of an ALS step, :func:`recsys_assets.core.als.solve_rows` with the Cholesky solver).
  :func:`likes_row` builds that row from a plain list of liked artists.
* :func:`explain_als`: which of the listener's artists drove a recommendation (Hu, Koren & Volinsky
  2008, section 5): with ``W = (Y^T C Y + lambda I)^-1`` the score of item ``i`` is
  ``sum_j s_ij c_j`` over the listener's artists ``j``, ``s_ij = y_i^T W y_j``; each term is artist
  ``j``'s contribution.

The confidence convention is the product's ALS (``implicit``'s): an observed pair has confidence
``c = alpha * weighted value`` and preference 1, an unobserved pair confidence 1 and preference 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.als import solve_rows

__all__ = [
    "Explanation",
    "FoldInError",
    "compose",
    "explain_als",
    "fold_in_als",
    "like",
    "likes_row",
    "nearest_by_cosine",
    "parse_like",
]


class FoldInError(ValueError):
    """A like-expression, a list of liked artists or a fold-in input is not usable."""


# A number before "*": 0.5*Muse, 2 * Björk, 1e-1*X.
_WEIGHT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*(.*)$", re.S)


def _split_terms(expression: str, noun: str = "artist") -> list[tuple[int, str]]:
    """(sign, text) per term. An operator is a ``+`` / ``-`` at the start or with blanks on both sides,
    outside double quotes, so "Jay-Z" and "Blink-182" stay whole; quote a name holding " + "."""
    terms: list[tuple[int, str]] = []
    sign, current, quoted = 1, "", False
    for i, ch in enumerate(expression):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in "+-":
            spaced = (i == 0 or expression[i - 1].isspace()) and (
                i + 1 == len(expression) or expression[i + 1].isspace()
            )
            if not current.strip():
                if terms:
                    raise FoldInError(
                        f"like: an operator with no {noun} before it at character {i + 1} of {expression!r}"
                    )
                sign = -sign if ch == "-" else sign  # leading sign
                current = ""
                continue
            if spaced:
                terms.append((sign, current))
                sign, current = (-1 if ch == "-" else 1), ""
                continue
        current += ch
    if quoted:
        raise FoldInError(f"like: unclosed double quote in {expression!r}")
    terms.append((sign, current))
    return terms


def parse_like(expression: str, noun: str = "artist") -> list[tuple[float, str]]:
    """``"0.5*Muse + Björk - Coldplay"`` -> ``[(0.5, "Muse"), (1.0, "Björk"), (-1.0, "Coldplay")]``.

    Terms are joined by ``+`` or ``-`` with blanks around them (a leading sign needs none); a term is an
    artist name, optionally preceded by ``<number> *``; a name in double quotes may hold anything but a
    quote. Blank space around names is dropped. One-line :class:`FoldInError` on a malformed expression,
    which calls a name's thing ``noun`` ("item" where the data is not music).
    """
    if not expression or not expression.strip():
        raise FoldInError('like: the expression is empty; write e.g. "Radiohead + Daft Punk - Coldplay"')
    out = []
    for position, (sign, text) in enumerate(_split_terms(expression, noun), start=1):
        weight = 1.0
        match = _WEIGHT.match(text)
        if match:
            weight, text = float(match.group(1)), match.group(2)
        name = text.strip()
        if len(name) >= 2 and name[0] == name[-1] == '"':
            name = name[1:-1].strip()
        if not name or '"' in name:
            raise FoldInError(
                f"like: term {position} of {expression!r} has no {noun} name (or a stray quote)"
            )
        out.append((sign * weight, name))
    return out


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def compose(
    terms: Sequence[tuple[float, str]], resolve: Callable[[str], int], item_factors: np.ndarray
) -> tuple[np.ndarray, list[int]]:
    """The composed vector ``sum_t w_t y_t / |y_t|`` (float64) and the resolved item ids, in term order.

    ``resolve`` maps a name to an item index (row of ``item_factors``) or raises ``LookupError`` with a
    message for the user, which is passed on as a :class:`FoldInError`.
    """
    ids = []
    for _, name in terms:
        try:
            ids.append(int(resolve(name)))
        except LookupError as error:
            message = error.args[0] if error.args else name
            raise FoldInError(f"like: {message}") from None
    units = _unit_rows(np.asarray(item_factors)[ids])
    vector = (np.array([w for w, _ in terms])[:, None] * units).sum(axis=0)
    return vector, ids


def nearest_by_cosine(
    vector: np.ndarray, item_factors: np.ndarray, n: int = 10, exclude: Sequence[int] = ()
) -> list[tuple[int, float]]:
    """The ``n`` items whose factors have the highest cosine with ``vector``, best first, ``exclude`` left
    out; ties go to the lower index. ``(item, cosine)`` pairs."""
    norm = float(np.linalg.norm(vector))
    if not norm > 0:
        raise FoldInError("like: the terms cancel out (the composed vector is zero); change the weights")
    scores = _unit_rows(item_factors) @ (np.asarray(vector, dtype=np.float64) / norm)
    scores[list(exclude)] = -np.inf
    order = np.lexsort((np.arange(scores.size), -scores))
    order = [int(i) for i in order if np.isfinite(scores[i])][:n]
    return [(i, float(scores[i])) for i in order]


def like(
    expression: str,
    resolve: Callable[[str], int],
    item_factors: np.ndarray,
    n: int = 10,
    noun: str = "artist",
) -> list[tuple[int, float]]:
    """Artists nearest (cosine) to the composed vector of ``expression``, the query artists excluded
    (``noun``: what messages call an item, see :func:`parse_like`)."""
    vector, ids = compose(parse_like(expression, noun), resolve, item_factors)
    return nearest_by_cosine(vector, item_factors, n=n, exclude=ids)


def likes_row(weighted: sp.csr_matrix, items: Sequence[int]) -> sp.csr_matrix:
    """A 1 x n_items row for a listener who likes ``items``: each holds the median stored value of its
    column in ``weighted`` (what a typical listener of that artist has); an artist nobody played gets the
    median of all stored values."""
    items = list(dict.fromkeys(int(i) for i in items))
    if not items:
        raise FoldInError("likes: the list of liked artists is empty")
    n_items = weighted.shape[1]
    bad = [i for i in items if not 0 <= i < n_items]
    if bad:
        raise FoldInError(f"likes: artist index {bad[0]} is outside 0..{n_items - 1}")
    columns = sp.csc_matrix(weighted)
    overall = float(np.median(columns.data)) if columns.nnz else 1.0
    values = []
    for i in items:
        stored = columns.data[columns.indptr[i] : columns.indptr[i + 1]]
        values.append(float(np.median(stored)) if stored.size else overall)
    order = np.argsort(items)
    return sp.csr_matrix(
        (np.array(values, dtype=np.float32)[order], np.array(items)[order], [0, len(items)]),
        shape=(1, n_items),
    )


def _checked_row(row: sp.spmatrix, item_factors: np.ndarray) -> sp.csr_matrix:
    row = sp.csr_matrix(row, dtype=np.float32)
    if row.shape != (1, item_factors.shape[0]):
        raise FoldInError(f"fold-in row must have shape (1, {item_factors.shape[0]}), got {row.shape}")
    if row.nnz == 0:
        raise FoldInError("fold-in row is empty: the listener likes no known artist")
    return row


def fold_in_als(
    row: sp.spmatrix, item_factors: np.ndarray, alpha: float, regularization: float
) -> np.ndarray:
    """A new listener's ALS vector, float32 ``(f,)``, from their 1 x n_items row of the weighted matrix.

    Solves ``(Y^T Y + lambda I + sum_j (c_j - 1) y_j y_j^T) x = sum_j c_j y_j`` with ``c_j = alpha * row_j``
    exactly (float64 Cholesky): the user half-step of the ALS fit, so a listener of the training data
    folded in against the final item factors gets what the next ALS user step would give them.
    """
    row = _checked_row(row, item_factors)
    zeros = np.zeros((1, item_factors.shape[1]), dtype=np.float32)
    confidence = (row * np.float32(alpha)).tocsr()
    return solve_rows(confidence, item_factors, zeros, regularization, solver="cholesky", threads=1)[0]


@dataclass(frozen=True)
class Explanation:
    """``score`` = ``sum(contributions)`` = the listener's predicted preference for ``item``;
    ``contributions`` are ``(artist j, s_ij c_j)`` over the listener's artists, largest first."""

    item: int
    score: float
    contributions: list[tuple[int, float]]


def explain_als(
    row: sp.spmatrix, item: int, item_factors: np.ndarray, alpha: float, regularization: float
) -> Explanation:
    """Hu, Koren & Volinsky's explanation of ``item`` for the listener whose weighted row is ``row``.

    In float64: ``W = (Y^T Y + lambda I + sum_j (c_j - 1) y_j y_j^T)^-1``, ``s_ij = y_i^T W y_j`` and
    contribution ``s_ij c_j`` with ``c_j = alpha * row_j``; they sum to ``y_i . x`` for the folded-in
    vector ``x`` of :func:`fold_in_als`.
    """
    Y = np.asarray(item_factors, dtype=np.float64)
    row = _checked_row(row, Y)
    if not 0 <= item < Y.shape[0]:
        raise FoldInError(f"explain: artist index {item} is outside 0..{Y.shape[0] - 1}")
    liked = row.indices
    c = alpha * row.data.astype(np.float64)
    Yj = Y[liked]
    A = Y.T @ Y + regularization * np.eye(Y.shape[1]) + (Yj * (c - 1.0)[:, None]).T @ Yj
    s = Yj @ np.linalg.solve(A, Y[item])  # s_ij = y_j^T W y_i (W symmetric)
    contributions = s * c
    order = np.lexsort((liked, -contributions))
    return Explanation(
        item=int(item),
        score=float(contributions.sum()),
        contributions=[(int(liked[k]), float(contributions[k])) for k in order],
    )
