"""The one way a sparse matrix is brought to canonical CSR form before a kernel trusts its layout."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _shares_memory(out: sp.csr_matrix, X: object) -> bool:
    """Whether any array of ``out`` may share memory with an array of the input ``X``."""
    if not sp.issparse(X):
        return False
    theirs = [getattr(X, n) for n in ("data", "indices", "indptr", "row", "col") if hasattr(X, n)]
    return any(np.shares_memory(a, b) for a in (out.data, out.indices, out.indptr) for b in theirs)


def canonical_csr(
    X: sp.spmatrix | sp.sparray,
    dtype: np.dtype | type | None = None,
    copy: bool = False,
    drop_zeros: bool = False,
) -> sp.csr_matrix:
    """``X`` as a ``csr_matrix`` in canonical form: indices sorted within each row, duplicate entries
    summed, and with ``drop_zeros`` no explicitly stored zeros.

    ``dtype`` converts the values (duplicates are summed in that type). The input is never modified:
    it is copied when ``copy`` is true or when it has to change; otherwise a canonical CSR input of the
    requested dtype is returned as is (shared, not copied).
    """
    out = sp.csr_matrix(X, dtype=dtype, copy=copy)
    owned = copy or not _shares_memory(out, X)
    if not out.has_canonical_format:
        if not owned:
            out, owned = out.copy(), True
        out.sum_duplicates()  # also sorts the indices
    if drop_zeros and out.nnz and not out.data.all():
        if not owned:
            out = out.copy()
        out.eliminate_zeros()
    return out
