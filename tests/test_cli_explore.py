"""`recsys like`, `recsys recommend --likes` and `recsys explain` on the session's refreshed home, each
checked against the published factors worked through by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_assets.catalog import Catalog
from recsys_assets.cli import main
from recsys_assets.core.foldin import fold_in_als, likes_row
from recsys_assets.core.loaders import read_play_matrix
from recsys_assets.pipeline.matrices import apply_weighting
from recsys_assets.settings import Settings

pytestmark = pytest.mark.slow


def _popular(home, n: int) -> list[tuple[int, str]]:
    with Catalog(home).connect() as conn:
        return conn.execute(
            "SELECT a.artist_id, a.name FROM plays JOIN artists a USING (artist_id) "
            "GROUP BY a.artist_id, a.name ORDER BY count(*) DESC, a.artist_id LIMIT ?",
            [n],
        ).fetchall()


def _published(home, model: str = "als"):
    with Catalog(home).connect() as conn:
        n = conn.execute("SELECT max(artist_id) + 1 FROM artists").fetchone()[0]
        rows = conn.execute(
            "SELECT artist_id, factors FROM artist_factors WHERE model = ?", [model]
        ).fetchall()
        names = dict(conn.execute("SELECT artist_id, name FROM artists").fetchall())
        plays = read_play_matrix(conn)
    Y = np.zeros((n, len(rows[0][1])))
    for i, f in rows:
        Y[i] = f
    return Y, names, plays


def _artists_printed(out: str) -> list[str]:
    """The ``artist`` column of the table the CLI printed (columns are aligned under the header)."""
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    start = lines[header].index("artist")
    rest = lines[header][start + len("artist") :]
    end = len(lines[header]) - len(rest.lstrip())
    return [line[start:end].strip() for line in lines[header + 1 :]]


def test_like_is_the_nearest_to_the_hand_composed_vector(recsys_home_env, capsys):
    (a, name_a), (b, name_b), (c, name_c) = _popular(recsys_home_env, 3)
    assert main(["like", f"0.5*{name_a} + {name_b} - {name_c}", "--model", "als", "-n", "5"]) == 0
    got = _artists_printed(capsys.readouterr().out)
    Y, names, _ = _published(recsys_home_env)
    unit = Y / np.linalg.norm(Y, axis=1, keepdims=True).clip(1e-30)
    vector = 0.5 * unit[a] + unit[b] - unit[c]
    cosine = unit @ (vector / np.linalg.norm(vector))
    cosine[[a, b, c]] = -np.inf
    assert got == [names[i] for i in np.argsort(-cosine)[:5]]


def test_recommend_likes_is_the_als_fold_in(recsys_home_env, capsys):
    liked = _popular(recsys_home_env, 3)
    likes = ",".join(name for _, name in liked)
    assert main(["recommend", "--likes", likes, "--model", "als", "-n", "5"]) == 0
    got = _artists_printed(capsys.readouterr().out)
    Y, names, plays = _published(recsys_home_env)
    settings = Settings()  # the CLI runs without a settings file: the defaults (alpha, regularization)
    weighted = apply_weighting(plays, settings.weighting)
    x = fold_in_als(
        likes_row(weighted, [i for i, _ in liked]),
        Y.astype(np.float32),
        settings.als.alpha,
        settings.als.regularization,
    )
    scores = Y @ x
    scores[[i for i, _ in liked]] = -np.inf
    assert got == [names[i] for i in np.argsort(-scores)[:5]]
    assert not set(got) & {name for _, name in liked}


def test_recommend_likes_without_fold_in_is_one_line(recsys_home_env, capsys):
    ((_, name),) = _popular(recsys_home_env, 1)
    assert main(["recommend", "--likes", name, "--model", "lsa"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no fold-in" in err and "lsa" in err


def test_explain_sums_to_the_folded_in_score(recsys_home_env, capsys):
    with Catalog(recsys_home_env).connect() as conn:
        user_id, user_key, artist = conn.execute(
            "SELECT u.user_id, u.user_key, a.name FROM recommendations r JOIN users u USING (user_id) "
            "JOIN artists a USING (artist_id) WHERE r.model = 'als' AND r.rank = 1 ORDER BY u.user_id LIMIT 1"
        ).fetchone()
    assert main(["explain", user_key, artist, "-n", "3"]) == 0
    out = capsys.readouterr().out
    printed = float(out.splitlines()[0].split(": ")[1].split(";")[0])
    Y, names, plays = _published(recsys_home_env)
    settings = Settings()
    row = apply_weighting(plays, settings.weighting)[user_id]
    x = fold_in_als(row, Y.astype(np.float32), settings.als.alpha, settings.als.regularization)
    item = next(i for i, n in names.items() if n == artist)
    assert printed == pytest.approx(float(Y[item] @ x), abs=2e-4)
    listened = set(names[j] for j in row.indices)
    assert len(_artists_printed(out)) == 3 and set(_artists_printed(out)) <= listened
    assert main(["explain", user_key, artist, "--model", "lsa"]) == 1
    assert "only ALS" in capsys.readouterr().err
