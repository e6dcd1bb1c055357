"""Demonstration choice: balanced nearest neighbours carry the label set, interleaved with the best last; the fixed
set is the same label-balanced demonstrations for every input; NER demonstrations cover every entity type."""

from __future__ import annotations

import numpy as np
import pytest

from llmaaa_local.demos import DemoPool
from llmaaa_local.records import Example, Span


def pool(labels: list[str], similarity: list[float]) -> tuple[list[Example], np.ndarray]:
    """Demos with unit vectors whose dot product with the query vector [1, 0] is `similarity`."""
    demos = [Example(f"d{i}", f"text {i}", label=label) for i, label in enumerate(labels)]
    vectors = np.array([[s, np.sqrt(1 - s * s)] for s in similarity])
    return demos, vectors


QUERY = np.array([1.0, 0.0])


def test_plain_knn_takes_the_nearest_whatever_their_labels() -> None:
    demos, vectors = pool(["pos", "pos", "pos", "neg", "neg"], [0.9, 0.8, 0.7, 0.2, 0.1])
    chosen = DemoPool(demos, "knn", 3, vectors).choose(Example("x", "q"), QUERY)
    assert [d.id for d in chosen] == ["d2", "d1", "d0"]  # all "pos": the model would learn to answer "pos"


def test_balanced_knn_interleaves_the_labels_with_the_most_similar_last() -> None:
    demos, vectors = pool(["pos", "pos", "pos", "neg", "neg", "neg"], [0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    chosen = DemoPool(demos, "balanced", 4, vectors).choose(Example("x", "q"), QUERY)
    # round 1: best pos (0.9) and best neg (0.3); round 2: 0.8 and 0.2; weakest round first, best of each last
    assert [(d.id, d.label) for d in chosen] == [("d4", "neg"), ("d1", "pos"), ("d3", "neg"), ("d0", "pos")]
    odd = DemoPool(demos, "balanced", 3, vectors).choose(Example("x", "q"), QUERY)
    assert [d.id for d in odd] == ["d1", "d3", "d0"]  # the third goes to the label whose next is most similar


def test_balanced_knn_with_more_labels_than_k_takes_the_labels_nearest_the_input() -> None:
    demos, vectors = pool(["a", "b", "c", "d", "a"], [0.5, 0.9, 0.1, 0.7, 0.6])
    chosen = DemoPool(demos, "balanced", 3, vectors).choose(Example("x", "q"), QUERY)
    assert [d.label for d in chosen] == ["a", "d", "b"] and [d.id for d in chosen] == ["d4", "d3", "d1"]


def test_the_example_itself_is_never_its_own_demonstration() -> None:
    demos, vectors = pool(["pos", "neg", "pos", "neg"], [0.9, 0.8, 0.7, 0.6])
    chosen = DemoPool(demos, "balanced", 2, vectors).choose(demos[0], QUERY)
    assert [d.id for d in chosen] == ["d2", "d1"]


def test_the_fixed_set_is_one_label_balanced_set_for_every_input_and_each_seed_another() -> None:
    demos = [Example(f"d{i}", "t", label=("pos", "neg", "mixed")[i % 3]) for i in range(30)]
    fixed = DemoPool(demos, "fixed", 3, None, seed=5)
    first = fixed.choose(Example("x", "anything"))
    assert sorted(str(d.label) for d in first) == ["mixed", "neg", "pos"]
    assert first == fixed.choose(Example("y", "something else"), np.array([0.0, 1.0]))
    assert first == DemoPool(demos, "fixed", 3, None, seed=5).choose(Example("z", "q"))
    others = [DemoPool(demos, "fixed", 3, None, seed=seed).choose(Example("x", "q")) for seed in range(4)]
    assert len({tuple(d.id for d in chosen) for chosen in others}) == 4
    # leave-one-out on gold: a member of the fixed set gets another of its label instead
    replaced = fixed.choose(first[-1])
    assert first[-1].id not in {d.id for d in replaced}
    assert sorted(str(d.label) for d in replaced) == ["mixed", "neg", "pos"]


def ner(example_id: str, types: list[str]) -> Example:
    return Example(example_id, "a b c d", ("a", "b", "c", "d"), label=tuple(Span(i, i + 1, t)
                                                                             for i, t in enumerate(types)))


def test_ner_demonstrations_together_cover_every_entity_type() -> None:
    demos = [ner("d0", ["PER"]), ner("d1", ["PER", "ORG"]), ner("d2", []), ner("d3", ["LOC"]),
             ner("d4", ["MISC"]), ner("d5", ["PER"])]
    vectors = np.array([[s, np.sqrt(1 - s * s)] for s in [0.95, 0.9, 0.85, 0.3, 0.2, 0.8]])
    plain = DemoPool(demos, "knn", 3, vectors).choose(Example("x", "q"), QUERY)
    assert {t for d in plain for s in d.label for t in [s.type]} == {"PER", "ORG"}  # type: ignore[union-attr]
    covering = DemoPool(demos, "balanced", 3, vectors).choose(Example("x", "q"), QUERY)
    shown = {s.type for d in covering for s in d.label}  # type: ignore[union-attr]
    assert shown == {"PER", "ORG", "LOC", "MISC"}
    assert [d.id for d in covering] == ["d4", "d3", "d1"]  # d0 and d2 made way; the most similar last


@pytest.mark.parametrize("mode", ["knn", "balanced"])
def test_similarity_modes_need_embeddings(mode: str) -> None:
    demos, _ = pool(["pos"], [0.5])
    with pytest.raises(ValueError, match="need the demo embeddings"):
        DemoPool(demos, mode, 2, None)  # type: ignore[arg-type]
