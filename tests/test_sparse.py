"""canonical_csr: the one CSR canonicaliser, checked against dense sums; the input is never modified."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.sparse import canonical_csr


def _messy() -> sp.csr_matrix:
    """3 x 4 CSR with unsorted indices, a duplicate (0, 1) and a stored zero at (2, 3)."""
    data = np.array([2.0, 1.0, 4.0, 5.0, 0.0, 3.0])
    indices = np.array([3, 1, 1, 0, 3, 2])
    indptr = np.array([0, 3, 4, 6])
    return sp.csr_matrix((data, indices, indptr), shape=(3, 4))


def _snapshot(X: sp.csr_matrix) -> tuple[np.ndarray, ...]:
    return X.data.copy(), X.indices.copy(), X.indptr.copy()


@pytest.mark.parametrize("fmt", ["csr", "coo", "csc"])
def test_sums_duplicates_sorts_and_leaves_the_input_alone(fmt: str) -> None:
    messy = _messy()
    dense = np.zeros((3, 4))
    np.add.at(dense, (np.repeat(np.arange(3), np.diff(messy.indptr)), messy.indices), messy.data)
    X = messy.asformat(fmt) if fmt != "csr" else messy
    before = _snapshot(messy)
    out = canonical_csr(X)
    assert out.format == "csr" and out.has_canonical_format
    for row in range(3):
        cols = out.indices[out.indptr[row] : out.indptr[row + 1]]
        assert np.all(np.diff(cols) > 0)
    np.testing.assert_array_equal(out.toarray(), dense)
    for a, b in zip(before, _snapshot(messy), strict=True):
        np.testing.assert_array_equal(a, b)


def test_drop_zeros_dtype_and_copy() -> None:
    out = canonical_csr(_messy(), dtype=np.float32, drop_zeros=True)
    assert out.dtype == np.float32 and out.nnz == 4 and np.all(out.data != 0)
    kept = canonical_csr(_messy())
    assert kept.nnz == 5  # the stored zero stays without drop_zeros

    clean = sp.csr_matrix(np.array([[0.0, 1.0], [2.0, 0.0]]))
    assert canonical_csr(clean) is clean or np.shares_memory(canonical_csr(clean).data, clean.data)
    copied = canonical_csr(clean, copy=True)
    copied.data[:] = 9
    assert clean.data.tolist() == [1.0, 2.0]
