"""Live progress of the long kernels (evaluation, top-N, related items, alias candidates): the results are
bit-identical with and without a progress callable, and its reports rise monotonically to the right total."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys_assets.core.aliases import alias_candidates, shared_counts
from recsys_assets.core.ann import build_index, related_items
from recsys_assets.core.metrics import evaluate_factors, evaluate_scores
from recsys_assets.core.slices import run_sliced
from recsys_assets.core.split import per_user_holdout
from recsys_assets.core.synthetic import generate_plays
from recsys_assets.core.topk import cosine_topk, topk_dot, topk_scores
from recsys_assets.progress import Progress


class Recorder:
    """A progress callable that keeps every report."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, dict]] = []

    def __call__(self, done: int, total: int, **info: object) -> None:
        self.calls.append((done, total, info))

    def check(self, total: int) -> None:
        """Reports rise strictly, all with ``total``, and the last one is the whole."""
        assert self.calls, "no progress was reported"
        done = [c[0] for c in self.calls]
        assert all(t == total for _, t, _ in self.calls)
        assert all(b > a for a, b in zip(done, done[1:], strict=False)), done
        assert done[0] > 0 and done[-1] == total


@pytest.fixture(scope="module")
def data():
    plays = generate_plays(
        n_users=1500, n_artists=900, artists_per_user=30.0, n_alias_pairs=10, seed=3
    ).to_csr()
    rng = np.random.default_rng(0)
    users = rng.standard_normal((plays.shape[0], 16)).astype(np.float32)
    items = rng.standard_normal((plays.shape[1], 16)).astype(np.float32)
    items[[5, 17]] = 0.0  # all-zero vectors: no direction, left out of cosine searches
    return plays, users, items


def test_run_sliced_covers_every_block_once_in_order():
    ran: list[tuple[int, int]] = []
    recorder = Recorder()
    # A zero target makes every range as short as allowed: one block per thread.
    run_sliced(lambda b0, b1: ran.append((b0, b1)), 37, 2, recorder, lambda b: min(10 * b, 365), 365, 0.0)
    assert ran[0] == (0, 2) and ran[-1] == (36, 37) and len(ran) == 19
    assert all(a[1] == b[0] for a, b in zip(ran, ran[1:], strict=False))
    assert all(b1 - b0 == 2 for b0, b1 in ran[:-1])  # one block per thread
    recorder.check(365)
    whole: list[tuple[int, int]] = []
    run_sliced(lambda b0, b1: whole.append((b0, b1)), 37, 2, None, lambda b: b, 37)
    assert whole == [(0, 37)]  # without progress: one call, as before


def test_run_sliced_grows_ranges_towards_the_target():
    ran: list[tuple[int, int]] = []
    # A kernel that takes no measurable time: ranges grow 4x a time from one block per thread.
    run_sliced(lambda b0, b1: ran.append((b0, b1)), 1000, 2, Recorder(), lambda b: b, 1000)
    lengths = [b1 - b0 for b0, b1 in ran]
    assert lengths[:4] == [2, 8, 32, 128]


def test_evaluate_factors_same_report_with_progress(data):
    plays, users, items = data
    split = per_user_holdout(plays, test_fraction=0.2, min_items=5, seed=0)
    evaluated = int((np.diff(split.test.indptr) > 0).sum())
    plain = evaluate_factors(users, items, split.train, split.test, k=10, threads=2, block_size=16)
    recorder = Recorder()
    followed = evaluate_factors(
        users, items, split.train, split.test, k=10, threads=2, block_size=16, progress=recorder
    )
    assert followed == plain  # every field, exactly
    recorder.check(evaluated)
    assert len(recorder.calls) > 1


def test_evaluate_scores_reports_each_block(data):
    plays, users, items = data
    split = per_user_holdout(plays, test_fraction=0.2, min_items=5, seed=0)
    evaluated = int((np.diff(split.test.indptr) > 0).sum())

    def score(ids: np.ndarray) -> np.ndarray:
        return users[ids] @ items.T

    plain = evaluate_scores(score, split.train, split.test, k=10, threads=2, block_size=100)
    recorder = Recorder()
    assert (
        evaluate_scores(score, split.train, split.test, k=10, threads=2, block_size=100, progress=recorder)
        == plain
    )
    recorder.check(evaluated)
    assert len(recorder.calls) == -(-evaluated // 100)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_topk_dot_bit_identical_with_progress(data, exclude_self):
    plays, users, items = data
    queries, exclude = (items, None) if exclude_self else (users, plays)
    plain = topk_dot(queries, items, 20, exclude=exclude, exclude_self=exclude_self, block_rows=8, threads=2)
    recorder = Recorder()
    followed = topk_dot(
        queries,
        items,
        20,
        exclude=exclude,
        exclude_self=exclude_self,
        block_rows=8,
        threads=2,
        progress=recorder,
    )
    np.testing.assert_array_equal(followed[0], plain[0])
    np.testing.assert_array_equal(followed[1], plain[1])
    recorder.check(queries.shape[0])


def test_topk_scores_and_cosine_topk_with_progress(data):
    plays, users, items = data
    plain = topk_scores(lambda ids: users[ids] @ items.T, *plays.shape, 10, exclude=plays, block_rows=64)
    recorder = Recorder()
    followed = topk_scores(
        lambda ids: users[ids] @ items.T, *plays.shape, 10, exclude=plays, block_rows=64, progress=recorder
    )
    np.testing.assert_array_equal(followed[0], plain[0])
    np.testing.assert_array_equal(followed[1], plain[1])
    recorder.check(plays.shape[0])
    plain = cosine_topk(items, 10, block_rows=4, threads=2)
    recorder = Recorder()
    followed = cosine_topk(items, 10, block_rows=4, threads=2, progress=recorder)
    np.testing.assert_array_equal(followed[0], plain[0])
    np.testing.assert_array_equal(followed[1], plain[1])
    recorder.check(items.shape[0] - 2)  # the two all-zero rows are not searched


@pytest.mark.parametrize("backend", ["annoy", "hnsw"])
def test_related_items_same_with_progress(data, backend):
    _, _, items = data
    index = build_index(items, backend, seed=0, threads=1)
    plain = related_items(index, 10, threads=2)
    recorder = Recorder()
    # Small batches: the progress batch size is clipped below by 2,048 items, more than this catalogue.
    followed = related_items(index, 10, threads=2, batch=100, progress=recorder)
    np.testing.assert_array_equal(followed[0], plain[0])
    np.testing.assert_array_equal(followed[1], plain[1])
    recorder.check(items.shape[0])
    assert len(recorder.calls) == 9


def test_shared_counts_same_with_progress():
    import recsys_assets.core.aliases as aliases

    plays = sp.random(400, 300, density=0.1, random_state=1, format="csr")
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 300, 50_000), rng.integers(0, 300, 50_000)
    listeners, plain = shared_counts(plays, a, b, threads=2)
    recorder = Recorder()
    _, followed = shared_counts(plays, a, b, threads=2, progress=recorder)
    np.testing.assert_array_equal(followed, plain)
    recorder.check(a.size)
    binary = plays.toarray() > 0
    np.testing.assert_array_equal(plain, (binary[:, a] & binary[:, b]).sum(axis=0))
    assert a.size > aliases._PAIR_BLOCK  # more than one block, so ranges were cut


@pytest.mark.parametrize("with_index", [False, True])
def test_alias_candidates_same_with_progress_stage_by_stage(data, with_index):
    plays, _, items = data
    index = build_index(items, "hnsw", seed=0, threads=1) if with_index else None
    kwargs = dict(k=40, min_factor_similarity=0.0, max_listener_overlap=0.05, min_listeners=5, threads=2)
    # A small budget: many pair blocks in the similarity and score stages.
    kwargs |= dict(index=index, memory_budget_bytes=1 << 20)
    plain = alias_candidates(items, plays, **kwargs)
    recorder = Recorder()
    followed = alias_candidates(items, plays, **kwargs, progress=recorder)
    pd.testing.assert_frame_equal(followed, plain, check_exact=True)
    stages = list(dict.fromkeys(c[2]["stage"] for c in recorder.calls))
    assert stages == ["neighbours", "listener overlaps", "factor similarities", "scores"]
    for stage in stages:
        part = Recorder()
        part.calls = [c for c in recorder.calls if c[2]["stage"] == stage]
        unit = {c[2]["unit"] for c in part.calls}
        assert unit == ({"items"} if stage == "neighbours" else {"pairs"})
        part.check(part.calls[0][1])
    neighbour_total = recorder.calls[0][1]
    assert neighbour_total == (items.shape[0] if with_index else items.shape[0] - 2)
    pair_totals = {c[1] for c in recorder.calls if c[2]["stage"] != "neighbours"}
    assert len(pair_totals) == 1 and pair_totals.pop() >= len(plain)


def test_progress_stages_start_afresh_and_end_with_a_line():
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock, stream = Clock(), io.StringIO()
    with Progress("artist aliases als", stream=stream, clock=clock, display="lines") as progress:
        for i in range(1, 5):  # a stage starts at its first report (t = 5 s)
            clock.now = 5.0 * i
            progress(250 * i, 1000, stage="neighbours", unit="items")
        for i in range(1, 3):
            clock.now = 20.0 + 10.0 * i
            progress(5000 * i, 10_000, stage="listener overlaps", unit="pairs")
    lines = stream.getvalue().splitlines()
    assert lines == [
        # t = 15: 10 s into the stage, 750 items in 10 s, 250 left at 75/s.
        "artist aliases als (neighbours): 750/1,000 items (75%), 75 items/s, 3.3 s left",
        # The next stage's first report (t = 30) ends this one: 1,000 items in 25 s.
        "artist aliases als (neighbours): done 1,000/1,000 items (100%), 40 items/s, in 25 s",
        "artist aliases als (listener overlaps): 10,000/10,000 pairs (100%), 1,000 pairs/s, 0.0 s left",
        "artist aliases als (listener overlaps): done 10,000/10,000 pairs (100%), 1,000 pairs/s, in 10 s",
    ]


def test_pipeline_stages_report_into_the_log(data):
    """The pipeline layer follows each long stage with a Progress whose last line reaches ``log`` (the
    Dagster run log in an asset): evaluation, recommendations, related artists, alias candidates."""
    from recsys_assets.core.factorset import FactorSet
    from recsys_assets.core.models import get_model
    from recsys_assets.pipeline.answers import alias_table, recommendation_frame, related_lists
    from recsys_assets.pipeline.evaluation import evaluate_model
    from recsys_assets.pipeline.indexes import IndexRef
    from recsys_assets.settings import AliasSettings, RelatedSettings

    plays, users, items = data
    factors = FactorSet(model="als", user_factors=users, item_factors=items)
    split = per_user_holdout(plays, test_fraction=0.2, min_items=5, seed=0)
    evaluated = int((np.diff(split.test.indptr) > 0).sum())
    log: list[str] = []
    report = evaluate_model(get_model("als"), factors, split, 10, 2, 1 << 28, log=log.append)
    assert report == evaluate_factors(users, items, split.train, split.test, k=10, threads=2)
    frame = recommendation_frame(factors, plays, 10, ("als",), 2, 1 << 28, log=log.append)
    assert frame["user_id"].nunique() == plays.shape[0]
    ref = IndexRef("als", "hnsw", "unused", {}, items.shape[0], items.shape[1], "", query_method="exact")
    related, recall, method = related_lists(
        ref, "/nonexistent", factors, RelatedSettings(), 0, 2, log=log.append
    )
    assert method == "exact" and recall == 1.0
    aliases = AliasSettings(k=20, min_score=0.0)
    alias_table(factors, plays, aliases, 2, log=log.append)
    n_users, n_items = plays.shape
    assert log[0].startswith(f"evaluate als: done {evaluated:,}/{evaluated:,} users (100%)")
    assert log[1].startswith(f"recommendations als: done {n_users:,}/{n_users:,} users (100%)")
    assert log[2].startswith(f"related artists als (exact): done {n_items - 2:,}/{n_items - 2:,} artists")
    stages = [line.split(":")[0] for line in log[3:]]
    assert stages == [
        f"artist aliases als ({stage})"
        for stage in ("neighbours", "listener overlaps", "factor similarities", "scores")
    ]
    assert all(": done " in line and "(100%)" in line for line in log[3:])


def test_claim_terminal_keeps_the_terminal_when_descriptor_2_is_captured(monkeypatch, tmp_path):
    """Dagster's compute-log capture points descriptor 2 at a file during a run: a Progress created then
    still draws its bar on the terminal that ``recsys refresh`` claimed before the run."""
    import os

    import recsys_assets.progress as progress_module

    main_fd, terminal_fd = os.openpty()
    terminal = os.fdopen(terminal_fd, "w")
    monkeypatch.setattr(progress_module, "_terminal", None)
    monkeypatch.setattr("sys.stderr", terminal)
    progress_module.claim_terminal()
    claimed = progress_module._terminal
    try:
        assert claimed is not None and claimed.fileno() != terminal_fd and claimed.isatty()
        # What the capture does to the stream's descriptor: now a file, no longer a terminal.
        captured = open(tmp_path / "stderr.log", "w")  # noqa: SIM115
        os.dup2(captured.fileno(), terminal_fd)
        assert not terminal.isatty()
        with Progress("evaluate als", 10, unit="users", min_interval=0) as bar:
            assert bar.display == "bar" and bar._stream is claimed
            bar(10)
        assert b"evaluate als" in os.read(main_fd, 65536)
    finally:
        claimed.close()
        terminal.close()
        os.close(main_fd)
