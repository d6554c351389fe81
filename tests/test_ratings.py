"""Any ratings file through the `triples` source: headerless files, columns by position, the inferred
value column, item names (a column or an items file), `[data] min_value`, and the catalog's generic,
readable views."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

from recsys_assets.catalog import Catalog, create_derived_views, vocabulary
from recsys_assets.core.loaders import LoadError, load_triples

GENRES = ("Space", "Western", "Noir", "Musical")
N_PER_GENRE = 30


def movie_title(item: int) -> str:
    """Titles of the generated catalogue: item 1 is "Star Wars (1977)", item 2 a non-ASCII title."""
    if item == 1:
        return "Star Wars (1977)"
    if item == 2:
        return "Amélie in Space (2001)"
    genre, j = divmod(item - 1, N_PER_GENRE)
    return f"{GENRES[genre] if genre < len(GENRES) else 'Lost'} Story {j} ({1950 + j})"


def genre_of(item: int) -> int:
    return (item - 1) // N_PER_GENRE


def make_ratings(n_users: int = 150, seed: int = 0) -> list[tuple[int, int, int, int]]:
    """(user, item, rating, timestamp) rows, MovieLens-like: each user rates 16 movies of a favourite
    genre 4 or 5 and 4 movies of other genres 1 or 2; items are 1..120, 30 per genre."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, n_users + 1):
        genre = (user - 1) % len(GENRES)
        liked = rng.choice(N_PER_GENRE, size=16, replace=False) + 1 + genre * N_PER_GENRE
        others = [i for i in range(1, N_PER_GENRE * len(GENRES) + 1) if genre_of(i) != genre]
        disliked = rng.choice(others, size=4, replace=False)
        rows += [(user, int(i), int(rng.integers(4, 6)), 881250949 + user) for i in liked]
        rows += [(user, int(i), int(rng.integers(1, 3)), 881250949 + user) for i in disliked]
    return rows


def write_ratings(
    path: Path, rows, columns: int = 3, delimiter: str = "\t", header: str | None = None
) -> Path:
    lines = [header] if header is not None else []
    lines += [delimiter.join(str(v) for v in row[:columns]) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_items(path: Path, n_items: int = 120) -> Path:
    """A MovieLens u.item-like file: pipe-delimited, no header, id|title|release date|url|genre flags."""
    lines = [
        f"{i}|{movie_title(i)}|01-Jan-1995||http://example.org/{i}|"
        + "|".join("1" if g == genre_of(i) else "0" for g in range(len(GENRES)))
        for i in range(1, n_items + 1)
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def expected_plays(rows, min_value: float = 0.0) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for user, item, rating, _ in rows:
        if rating >= min_value:
            out[(str(user), str(item))] = out.get((str(user), str(item)), 0.0) + rating
    return out


def loaded_plays(conn: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], float]:
    rows = conn.execute(
        "SELECT u.user_key, a.artist_key, p.plays FROM plays p JOIN users u USING (user_id) "
        "JOIN artists a USING (artist_id)"
    ).fetchall()
    return {(u, a): v for u, a, v in rows}


@pytest.fixture
def conn():
    with duckdb.connect(":memory:") as c:
        yield c


def test_headerless_three_columns_with_an_items_file(conn, tmp_path):
    rows = make_ratings()
    ratings = write_ratings(tmp_path / "ratings.tsv", rows)
    items = write_items(tmp_path / "u.item", n_items=121)  # one listed movie nobody rated
    report = load_triples(conn, ratings, header=False, items_path=items, threads=1)
    assert report.lines_read == report.rows_loaded == len(rows)
    assert loaded_plays(conn) == expected_plays(rows)
    names = dict(conn.execute("SELECT artist_key, name FROM artists").fetchall())
    assert names == {str(i): movie_title(i) for i in range(1, 121)}
    assert report.extra == {"items_without_name": 0, "named_items_without_positives": 1}


def test_headerless_four_columns_needs_positions(conn, tmp_path):
    rows = make_ratings()
    udata = write_ratings(tmp_path / "u.data", rows, columns=4)
    with pytest.raises(LoadError, match=r"u\.data: .*1-based position: set \[data\] user_column"):
        load_triples(conn, udata, header=False)
    report = load_triples(conn, udata, 1, 2, 3, header=False, items_path=write_items(tmp_path / "u.item"))
    assert report.lines_read == report.rows_loaded == len(rows)
    assert loaded_plays(conn) == expected_plays(rows)
    with pytest.raises(LoadError, match=r"\[data\] value_column = 5, but lines have 4 field"):
        load_triples(conn, udata, 1, 2, 5, header=False)
    with pytest.raises(LoadError, match="names its columns by 1-based position"):
        load_triples(conn, udata, "userId", 2, 3, header=False)


def test_a_header_of_three_columns_needs_no_value_column(conn, tmp_path):
    rows = make_ratings(n_users=20)
    path = write_ratings(tmp_path / "ratings.csv", rows, delimiter=",", header="userId,movieId,rating")
    report = load_triples(conn, path, user_column="userId", item_column="movieId")
    assert report.rows_loaded == len(rows)
    assert loaded_plays(conn) == expected_plays(rows)
    # With a fourth column the value column is no longer obvious.
    path4 = write_ratings(tmp_path / "r4.csv", rows, 4, ",", header="userId,movieId,rating,timestamp")
    with pytest.raises(LoadError, match=r"no column 'value' \(\[data\] value_column\)"):
        load_triples(conn, path4, user_column="userId", item_column="movieId")


def test_item_name_column_in_the_triples_file(conn, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        'user,item,value,title\nu1,10,4,\nu1,11,5,"Heat, (1995)"\nu2,10,3,Alien\nu2,12,2,\nu3,10,1,Other\n'
    )
    report = load_triples(conn, path, item_name_column="title")
    # The first non-empty title names an item; item 12 has none and is named by its key.
    names = dict(conn.execute("SELECT artist_key, name FROM artists").fetchall())
    assert names == {"10": "Alien", "11": "Heat, (1995)", "12": "12"}
    assert report.extra == {"items_without_name": 1}


def test_min_value_rows_are_counted_not_positives_not_rejects(conn, tmp_path):
    rows = make_ratings(n_users=40) + [(999, 5, 1, 0), (1, 1, 2, 0)]  # user 999 only dislikes
    path = write_ratings(tmp_path / "r.tsv", rows)
    report = load_triples(conn, path, header=False, min_value=3)
    below = sum(r[2] < 3 for r in rows)
    expected = expected_plays(rows, min_value=3)
    assert loaded_plays(conn) == expected
    assert report.rows_below_min_value == below
    assert report.rows_loaded == len(rows) and report.rows_rejected == 0
    assert report.duplicates_merged == report.rows_loaded - below - report.n_plays
    assert conn.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM users WHERE user_key = '999'").fetchone()[0] == 0
    assert report.n_users == len({u for u, _ in expected})
    # The same file as Parquet, columns by position, gives the same plays.
    parquet = tmp_path / "r.parquet"
    duckdb.execute(
        f"COPY (SELECT * FROM read_csv('{path}', header = false, delim = '\t')) TO '{parquet}' (FORMAT parquet)"
    )
    report_pq = load_triples(conn, parquet, 1, 2, 3, min_value=3)
    assert loaded_plays(conn) == expected
    assert (report_pq.rows_below_min_value, report_pq.n_plays) == (below, report.n_plays)
    with pytest.raises(
        LoadError, match=r"every one of the .* valid rows has a value below \[data\] min_value"
    ):
        load_triples(conn, path, header=False, min_value=6)


def test_parquet_item_name_column_and_items_file(conn, tmp_path):
    path = tmp_path / "t.parquet"
    conn.execute(
        "COPY (SELECT * FROM (VALUES ('u1', 1, 4.0, NULL), ('u2', 1, 5.0, 'Star Wars (1977)'), "
        f"('u1', 2, 3.0, 'Two')) t(usr, itm, val, title)) TO '{path}'"
    )
    load_triples(conn, path, "usr", "itm", "val", item_name_column="title")
    assert conn.execute("SELECT artist_key, name FROM artists ORDER BY 1").fetchall() == [
        ("1", "Star Wars (1977)"),
        ("2", "Two"),
    ]
    items = tmp_path / "movies.csv"
    items.write_text('itm,title,genres\n1,"American President, The (1995)",Comedy|Drama\n')
    report = load_triples(conn, path, "usr", "itm", "val", items_path=items, item_name_column="title")
    assert conn.execute("SELECT artist_key, name FROM artists ORDER BY 1").fetchall() == [
        ("1", "American President, The (1995)"),
        ("2", "2"),
    ]
    assert report.extra == {"items_without_name": 1, "named_items_without_positives": 0}


def test_items_file_lines_that_cannot_be_read_are_rejects(conn, tmp_path):
    ratings = write_ratings(tmp_path / "r.tsv", make_ratings(n_users=8))
    items = write_items(tmp_path / "u.item")
    data = items.read_bytes().replace("Amélie".encode(), "Amélie".encode("latin-1"))
    items.write_bytes(data)
    report = load_triples(conn, ratings, header=False, items_path=items, max_reject_fraction=0.05)
    rejects = conn.execute("SELECT source_file, line_number, reason FROM rejects").fetchall()
    assert rejects == [(str(items), 2, "invalid UTF-8")]
    assert conn.execute("SELECT name FROM artists WHERE artist_key = '2'").fetchone() == ("2",)
    assert report.rows_rejected == 0  # the ratings file's own count
    with pytest.raises(LoadError, match=r"u\.item: 1 of 120 lines rejected"):
        load_triples(conn, ratings, header=False, items_path=items, max_reject_fraction=0.001)


def test_catalog_views_add_keys_and_names_and_skip_what_is_not_published(tmp_path):
    warehouse = duckdb.connect(str(tmp_path / "w.duckdb"))
    warehouse.execute(
        "CREATE TABLE artists AS SELECT * FROM (VALUES (0, '10', 'Alien', NULL), (1, '11', 'Heat', NULL)) "
        "v(artist_id, artist_key, name, mbid)"
    )
    warehouse.execute(
        "CREATE TABLE related_artists AS SELECT 'als' AS model, 0 AS artist_id, 1 AS rank, 1 AS related_id, 0.5::REAL AS score"
    )
    warehouse.execute("CREATE TABLE load_log AS SELECT now() AS loaded_at, 'triples' AS source")
    catalog = Catalog(tmp_path)
    catalog.publish(warehouse, ["artists", "related_artists", "load_log"])
    with catalog.connect() as conn:
        views = {
            name
            for (name,) in conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        }
        assert {"items", "related_items", "related_artists_named"} <= views
        # users, plays, recommendations and artist_aliases are not published: their views are left out.
        assert not views & {"interactions", "recommended_items", "item_aliases", "artist_aliases_named"}
        assert conn.execute(
            "SELECT item_name, rank, related_name, item_key, related_key FROM related_items"
        ).fetchall() == [("Alien", 1, "Heat", "10", "11")]
        assert vocabulary(conn)["item"] == "item"
    # recsys.duckdb has the same views (opened from inside the home, where its relative paths resolve).
    reader = duckdb.connect(str(catalog.path), read_only=True, config={"file_search_path": str(tmp_path)})
    assert reader.execute("SELECT related_name FROM related_artists_named").fetchall() == [("Heat",)]
    assert set(create_derived_views(duckdb.connect())) == set()


@pytest.mark.slow
def test_recsys_related_answers_a_title_from_a_headerless_ratings_file(tmp_path, monkeypatch, capsys):
    """The whole path a user takes: a headerless user/item/rating file and a u.item-like names file,
    `recsys refresh`, then `recsys related "<title>"`. Ratings below 3 are not positives, so each
    genre's movies are liked by that genre's fans only and a movie's related movies are its genre's."""
    from recsys_assets.cli import main
    from recsys_assets.settings import CPU_COUNT

    write_ratings(tmp_path / "ratings.tsv", make_ratings())
    write_items(tmp_path / "u.item")
    config = tmp_path / "recsys.toml"
    config.write_text(
        f"""
[data]
source = "triples"
path = "ratings.tsv"
header = false
items_path = "u.item"
min_value = 3
[als]
factors = 16
iterations = 6
[lsa]
factors = 12
[related]
n = 10
[recommend]
n = 10
[runtime]
threads = {min(2, CPU_COUNT)}
duckdb_memory_limit = "1GB"
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("RECSYS_CONFIG", str(config))
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert main(["refresh"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    with Catalog(tmp_path / "home").connect() as conn:  # every view of sql/views/catalog.sql binds
        views = {"items", "interactions", "related_items", "related_artists_named", "recommended_items"}
        views |= {"recommendations_named", "item_aliases", "artist_aliases_named"}
        for view in views:
            conn.execute(f"SELECT * FROM {view} LIMIT 1").fetchall()
        words = {"item": "item", "items": "items", "value": "value", "user": "user", "users": "users"}
        assert vocabulary(conn) == words
        assert conn.execute("SELECT min(value) FROM interactions").fetchone() == (4.0,)
    assert main(["related", "star wars (1977)", "-n", "10"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].split() == ["rank", "related_item", "score"]
    related = [line.split(None, 1)[1].rsplit(None, 1)[0] for line in out[1:]]  # between rank and score
    titles = {movie_title(i): i for i in range(1, 121)}
    assert len(related) == 10 and set(related) <= set(titles) and "Star Wars (1977)" not in related
    assert sum(genre_of(titles[t]) == 0 for t in related) >= 9, related
    # The generic view answers the same without a join, with the source's keys.
    assert main(["query", "SELECT related_name, related_key FROM related_items "
                 "WHERE model = 'als' AND item_key = '1' ORDER BY rank"]) == 0  # fmt: skip
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert [titles[" ".join(r[:-1])] for r in rows] == [int(r[-1]) for r in rows]
    assert [" ".join(r[:-1]) for r in rows] == related
