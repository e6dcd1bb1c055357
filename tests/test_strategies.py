"""Acquisition strategies on hand-made numpy pools: uncertainty values and order, NER aggregation, seeded
randomness, k-means diversity, the hybrid, cost-aware ranking, and the named pool errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from llmaaa_local.errors import LlmaaaError
from llmaaa_local.strategies import (
    STRATEGIES,
    EmptyPoolError,
    Entropy,
    Hybrid,
    KMeansDiversity,
    LeastConfidence,
    Margin,
    PoolExhaustedError,
    PoolScores,
    RandomSampling,
    Uncertainty,
    strategy_for,
)

ROWS = np.array([
    [0.7, 0.2, 0.1],
    [0.4, 0.35, 0.25],
    [1 / 3, 1 / 3, 1 / 3],
    [1.0, 0.0, 0.0],
])


def pool_of(*rows: list[float], **extra: np.ndarray) -> PoolScores:
    return PoolScores([np.array(row, dtype=float) for row in rows], **extra)


# --- uncertainty values ------------------------------------------------------------------------------------------


def test_least_confidence_is_one_minus_the_top_probability() -> None:
    assert LeastConfidence.values(ROWS) == pytest.approx([0.3, 0.6, 2 / 3, 0.0])


def test_entropy_in_nats() -> None:
    expected = [
        -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)),
        -(0.4 * math.log(0.4) + 0.35 * math.log(0.35) + 0.25 * math.log(0.25)),
        math.log(3),
        0.0,  # log(0) is clipped, so a certain row has no entropy and no NaN
    ]
    values = Entropy.values(ROWS)
    assert values == pytest.approx(expected, abs=1e-9)
    assert Entropy.values(np.array([[0.5, 0.5]])) == pytest.approx([math.log(2)])


def test_margin_is_one_minus_the_gap_between_the_two_best() -> None:
    assert Margin.values(ROWS) == pytest.approx([1 - 0.5, 1 - 0.05, 1.0, 0.0])
    assert Margin.values(np.array([[1.0], [1.0]])).tolist() == [0.0, 0.0]  # one label: nothing to be unsure about


@pytest.mark.parametrize(("strategy", "expected"), [
    (LeastConfidence(), [2, 1, 0, 3]),
    (Entropy(), [2, 1, 0, 3]),
    (Margin(), [2, 1, 0, 3]),
])
def test_query_returns_the_most_uncertain_first(strategy: Uncertainty, expected: list[int]) -> None:
    pool = PoolScores(list(ROWS))
    assert strategy.query(pool, 4).tolist() == expected
    assert strategy.query(pool, 2).tolist() == expected[:2]


def test_margin_and_least_confidence_can_disagree() -> None:
    # [0.5, 0.49, 0.01]: confident-ish top (LC 0.5) but a near tie (margin 0.99);
    # [0.4, 0.3, 0.3]: lower top (LC 0.6) with a clear gap (margin 0.9)
    pool = pool_of([0.5, 0.49, 0.01], [0.4, 0.3, 0.3])
    assert LeastConfidence().query(pool, 2).tolist() == [1, 0]
    assert Margin().query(pool, 2).tolist() == [0, 1]


def test_ties_are_broken_reproducibly_per_seed() -> None:
    pool = PoolScores([np.array([0.5, 0.5])] * 8)
    strategy = Entropy()
    orders = {seed: strategy.query(pool, 8, seed=seed).tolist() for seed in range(6)}
    for seed, order in orders.items():
        assert sorted(order) == list(range(8))
        assert strategy.query(pool, 8, seed=seed).tolist() == order
    assert len({tuple(order) for order in orders.values()}) > 1  # the seed really decides
    assert {order[0] for order in orders.values()} != {0}  # not simply the lowest index


def test_tie_breaking_never_overrides_a_real_difference() -> None:
    pool = pool_of(*[[0.9, 0.1]] * 5, [0.89, 0.11])  # index 5 is only a little less confident
    assert all(LeastConfidence().query(pool, 1, seed=seed).tolist() == [5] for seed in range(20))


# --- NER aggregation ---------------------------------------------------------------------------------------------


def ner_pool() -> PoolScores:
    """Per-token probabilities (tokens x labels): a long sentence of mildly uncertain tokens, a short sentence of
    two quite uncertain tokens, and a one-token sure sentence."""
    long = np.tile([0.8, 0.1, 0.1], (10, 1))  # least confidence 0.2 per token: sum 2.0, mean 0.2
    short = np.array([[0.4, 0.3, 0.3], [0.4, 0.3, 0.3]])  # 0.6 per token: sum 1.2, mean 0.6
    sure = np.array([[0.98, 0.01, 0.01]])  # 0.02
    return PoolScores([long, short, sure])


def test_sum_favours_the_long_sentence_and_mean_the_short_one() -> None:
    pool = ner_pool()
    summed, averaged = LeastConfidence("sum"), LeastConfidence("mean")
    assert summed.scores(pool) == pytest.approx([2.0, 1.2, 0.02])
    assert averaged.scores(pool) == pytest.approx([0.2, 0.6, 0.02])
    assert summed.query(pool, 3).tolist() == [0, 1, 2]
    assert averaged.query(pool, 3).tolist() == [1, 0, 2]
    assert strategy_for("least-confidence", "sum").query(pool, 1).tolist() == [0]
    assert strategy_for("least-confidence", "mean").query(pool, 1).tolist() == [1]
    assert LeastConfidence().aggregate == "mean"


def test_a_sentence_without_tokens_scores_zero() -> None:
    pool = PoolScores([np.zeros((0, 3)), np.array([[0.6, 0.2, 0.2]])])
    assert Entropy("sum").scores(pool)[0] == 0.0
    assert Entropy("mean").query(pool, 2).tolist() == [1, 0]


# --- random ------------------------------------------------------------------------------------------------------


def test_random_sampling_is_a_seeded_permutation() -> None:
    pool = PoolScores([np.zeros(1)] * 20)
    strategy = RandomSampling()
    first = strategy.query(pool, 20, seed=1)
    assert sorted(first.tolist()) == list(range(20))
    assert strategy.query(pool, 20, seed=1).tolist() == first.tolist()
    assert strategy.query(pool, 20, seed=2).tolist() != first.tolist()
    assert strategy.query(pool, 5, seed=1).tolist() == first[:5].tolist()
    assert first.tolist() != list(range(20))


# --- diversity ---------------------------------------------------------------------------------------------------

CENTRES = np.array([[10.0, 10.0], [-10.0, 10.0], [-10.0, -10.0], [10.0, -10.0]])


def blobs(per_blob: int = 10, spread: float = 0.3) -> np.ndarray:
    """Four well-separated blobs; rows i*per_blob .. (i+1)*per_blob-1 belong to blob i."""
    rng = np.random.default_rng(7)
    return np.concatenate([centre + rng.normal(0, spread, (per_blob, 2)) for centre in CENTRES])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kmeans_picks_one_example_per_blob(seed: int) -> None:
    vectors = blobs()
    pool = PoolScores([np.array([0.5, 0.5])] * len(vectors), embeddings=vectors)
    picked = KMeansDiversity().query(pool, 4, seed=seed).tolist()
    assert len(picked) == len(set(picked)) == 4
    assert sorted(i // 10 for i in picked) == [0, 1, 2, 3]
    assert KMeansDiversity().query(pool, 4, seed=seed).tolist() == picked


def test_kmeans_never_picks_an_index_twice_among_duplicates() -> None:
    vectors = np.array([[0.0, 0.0]] * 3 + [[5.0, 5.0]] * 3)  # only two distinct points, five clusters asked
    pool = PoolScores([np.array([0.5, 0.5])] * 6, embeddings=vectors)
    with pytest.warns(ConvergenceWarning):  # sklearn says it found fewer distinct clusters; the strategy still spreads
        picked = KMeansDiversity().query(pool, 5).tolist()
    assert len(picked) == len(set(picked)) == 5
    assert all(0 <= i < 6 for i in picked)


def hybrid_pool() -> tuple[PoolScores, list[int]]:
    """Four blobs of nine sure points near the centre plus one uncertain point off to the side."""
    rng = np.random.default_rng(3)
    vectors, probabilities, uncertain = [], [], []
    for centre in CENTRES:
        for _ in range(9):
            vectors.append(centre + rng.normal(0, 0.3, 2))
            probabilities.append(np.array([0.999, 0.001]))
        uncertain.append(len(vectors))
        vectors.append(centre + np.array([2.0, 2.0]))
        probabilities.append(np.array([0.5, 0.5]))
    return PoolScores(probabilities, embeddings=np.array(vectors)), uncertain


def test_hybrid_prefers_the_uncertain_point_inside_each_blob() -> None:
    pool, uncertain = hybrid_pool()
    picked = Hybrid().query(pool, 4).tolist()
    assert sorted(picked) == uncertain
    plain = KMeansDiversity().query(pool, 4).tolist()  # without weights the centre of each blob wins
    assert sorted(i // 10 for i in plain) == [0, 1, 2, 3]
    assert not set(plain) & set(uncertain)


def test_strategies_that_cluster_need_embeddings() -> None:
    pool = PoolScores([np.array([0.5, 0.5])] * 4)
    for name in ("kmeans", "hybrid"):
        with pytest.raises(LlmaaaError, match="needs the student's embeddings"):
            strategy_for(name).query(pool, 2)


# --- cost-aware --------------------------------------------------------------------------------------------------


def test_cost_aware_ranks_an_expensive_uncertain_example_below_a_cheap_one() -> None:
    probabilities = [np.array([0.5, 0.5]), np.array([0.6, 0.4])]  # least confidence 0.5 and 0.4
    plain = PoolScores(probabilities)
    costed = PoolScores(probabilities, seconds=np.array([10.0, 1.0]))
    strategy = LeastConfidence()
    assert strategy.query(plain, 2).tolist() == [0, 1]
    assert strategy.scores(costed) == pytest.approx([0.05, 0.4])
    assert strategy.query(costed, 2).tolist() == [1, 0]
    same_cost = PoolScores(probabilities, seconds=np.array([3.0, 3.0]))
    assert strategy.query(same_cost, 2).tolist() == [0, 1]


# --- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STRATEGIES)
def test_an_empty_pool_is_a_named_error(name: str) -> None:
    with pytest.raises(EmptyPoolError, match="the pool is empty"):
        strategy_for(name).query(PoolScores([], embeddings=np.zeros((0, 2))), 1)


@pytest.mark.parametrize("name", STRATEGIES)
def test_asking_for_more_than_the_pool_holds_is_a_named_error(name: str) -> None:
    pool = PoolScores([np.array([0.5, 0.5])] * 3, embeddings=np.eye(3))
    with pytest.raises(PoolExhaustedError, match="only 3 unlabeled examples are left, 4 were asked for"):
        strategy_for(name).query(pool, 4)
    assert len(strategy_for(name).query(pool, 3)) == 3  # exactly the pool size is fine


def test_pool_errors_are_project_errors() -> None:
    assert issubclass(EmptyPoolError, LlmaaaError) and issubclass(PoolExhaustedError, LlmaaaError)
    assert not issubclass(EmptyPoolError, PoolExhaustedError)


def test_strategy_for_rejects_unknown_names() -> None:
    with pytest.raises(LlmaaaError, match=r"unknown strategy 'coreset': choose one of random, least-confidence"):
        strategy_for("coreset")


def test_strategy_for_knows_every_listed_name() -> None:
    assert [strategy_for(name).name for name in STRATEGIES] == list(STRATEGIES)
    hybrid = strategy_for("hybrid", "sum")
    assert isinstance(hybrid, Hybrid) and isinstance(hybrid.uncertainty, Entropy)
    assert hybrid.uncertainty.aggregate == "sum"
