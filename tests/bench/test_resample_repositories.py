"""The repository-balanced resampling behind a row of the variants table draws the shares it says."""

from collections import Counter

from bench.resample_repositories import balanced_indices


def test_shares_follow_size_to_the_power_alpha():
    repositories = ["big"] * 900 + ["small"] * 100
    drawn = Counter(repositories[index] for index in balanced_indices(repositories, alpha=0.5))
    assert drawn == {"big": 750, "small": 250}  # 1000 rows split 30:10, i.e. sqrt(900):sqrt(100)


def test_alpha_one_keeps_every_row_once():
    repositories = ["a"] * 30 + ["b"] * 10
    assert sorted(balanced_indices(repositories, alpha=1.0)) == list(range(40))


def test_a_small_repository_drawn_beyond_its_size_keeps_all_its_rows_first():
    repositories = ["big"] * 90 + ["small"] * 10
    indices = balanced_indices(repositories, alpha=0.0)  # equal shares: 50 rows each
    small = [index for index in indices if index >= 90]
    assert len(small) == 50 and set(small) == set(range(90, 100))
