"""Metadata filters: equality, membership, ranges, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from sipp.errors import InvalidRequestError
from sipp.vector import VectorIndex


@pytest.fixture
def index() -> VectorIndex:
    rng = np.random.default_rng(3)
    ix = VectorIndex(8)
    metas = [
        {"lang": ["en", "fr", "de"][i % 3], "year": 1990 + i % 40, "draft": i % 2 == 0}
        for i in range(300)
    ]
    metas[5] = {}
    ix.add([str(i) for i in range(300)], rng.standard_normal((300, 8)), metadatas=metas)
    return ix


def _ids(index: VectorIndex, where: dict[str, object]) -> set[str]:
    return {h.id for h in index.search(np.ones(8), k=1000, filter=where)}


def test_equality_in_and_ranges(index: VectorIndex) -> None:
    assert _ids(index, {"lang": "fr"}) == {str(i) for i in range(300) if i % 3 == 1 and i != 5}
    assert _ids(index, {"lang": {"$in": ["en", "de"]}}) == {
        str(i) for i in range(300) if i % 3 != 1 and i != 5
    }
    want = {str(i) for i in range(300) if 2000 <= 1990 + i % 40 < 2005 and i != 5}
    assert _ids(index, {"year": {"$gte": 2000, "$lt": 2005}}) == want
    assert _ids(index, {"lang": "en", "draft": True}) == {
        str(i) for i in range(300) if i % 6 == 0
    }
    assert _ids(index, {"lang": {"$nin": ["en", "fr"]}, "year": {"$lte": 1991}}) == {
        str(i) for i in range(300) if i % 3 == 2 and 1990 + i % 40 <= 1991 and i != 5
    }


def test_missing_key_never_matches(index: VectorIndex) -> None:
    assert "5" not in _ids(index, {"lang": {"$ne": "xx"}})


def test_filtered_results_are_the_best_of_the_subset(index: VectorIndex) -> None:
    everything = index.search(np.ones(8), k=1000)
    fr = [h.id for h in everything if h.metadata and h.metadata.get("lang") == "fr"]
    assert [h.id for h in index.search(np.ones(8), k=7, filter={"lang": "fr"})] == fr[:7]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ({"year": {"$between": 1}}, r"filter.year.\$between: unknown filter operator"),
        ({"year": {"$gt": [1]}}, r"filter.year.\$gt must be a number or a string"),
        ({"lang": {"$in": "en"}}, r"filter.lang.\$in must be a list"),
        ({"$or": []}, "operators go inside a field"),
        ({"lang": ["en"]}, "filter.lang must be a JSON scalar"),
    ],
)
def test_bad_filters_name_the_field(
    index: VectorIndex, where: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        index.search(np.ones(8), filter=where)
