"""Learned example reweighting: a real linear classifier on synthetic 2-D data where gold says class 1 for x > 0,
and the trainer's reweighting path on the tiny student."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import student_project, train_student
from torch import nn
from torch.nn import functional

from llmaaa_local import reweight
from llmaaa_local.models import sha256_file
from llmaaa_local.project import Project
from llmaaa_local.reweight import example_weights


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class Linear2D(nn.Module):
    """A two-class linear classifier; `forward` takes keyword inputs like the student does."""

    def __init__(self, zero: bool = False) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 2)
        if zero:
            nn.init.zeros_(self.layer.weight)
            nn.init.zeros_(self.layer.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layer(features)


def per_example(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return functional.cross_entropy(logits, targets, reduction="none")


def points(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points with |x| in 0.5..2 and a little noise in y; the true class is 1 where x > 0."""
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, generator=generator) * 1.5 + 0.5) * torch.where(torch.rand(n, generator=generator) < 0.5,
                                                                       -1.0, 1.0)
    y = torch.randn(n, generator=generator) * 0.3
    return torch.stack([x, y], dim=1), (x > 0).long()


def weights_for(model: nn.Module, features: torch.Tensor, targets: torch.Tensor, step_size: float = 0.1,
                gold_seed: int = 99) -> torch.Tensor:
    gold_features, gold_targets = points(32, gold_seed)
    return example_weights(model, {"features": features}, targets, {"features": gold_features}, gold_targets,
                           per_example, step_size)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weights_are_a_distribution_over_the_batch(seed: int) -> None:
    torch.manual_seed(seed)
    features, targets = points(24, seed)
    weights = weights_for(Linear2D(), features, targets)
    assert weights.shape == (24,)
    assert bool((weights >= 0).all())
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_labels_that_contradict_gold_get_less_weight(seed: int) -> None:
    torch.manual_seed(seed)
    features, targets = points(30, seed)
    flipped = torch.zeros(30, dtype=torch.bool)
    flipped[::3] = True  # every third LLM label is wrong
    noisy = torch.where(flipped, 1 - targets, targets)
    weights = weights_for(Linear2D(), features, noisy)
    correct_mean, flipped_mean = float(weights[~flipped].mean()), float(weights[flipped].mean())
    assert correct_mean > 0
    assert flipped_mean < 0.2 * correct_mean, (flipped_mean, correct_mean)
    # the heaviest examples are all correct ones
    assert not bool(flipped[weights.argsort(descending=True)[:10]].any())


def test_from_a_zero_model_every_flipped_label_gets_exactly_zero() -> None:
    # From zero weights each example's gradient is +-(its point), so the sign of its dot product with the gold
    # gradient is exactly whether its label agrees with gold.
    features, targets = points(20, 5)
    flipped = torch.arange(20) % 4 == 0
    weights = weights_for(Linear2D(zero=True), features, torch.where(flipped, 1 - targets, targets))
    assert weights[flipped].tolist() == [0.0] * int(flipped.sum())
    assert bool((weights[~flipped] > 0).all())
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-5)


def test_when_every_label_opposes_gold_all_weights_stay_zero() -> None:
    features, targets = points(16, 6)
    weights = weights_for(Linear2D(zero=True), features, 1 - targets)
    assert weights.tolist() == [0.0] * 16  # not NaN from normalising by a zero sum


def test_all_flipped_labels_on_a_trained_model_stay_zero() -> None:
    features, targets = points(64, 7)
    model = Linear2D()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(50):  # fit the true rule first, so every flipped gradient clearly points away from gold
        optimizer.zero_grad()
        per_example(model(features), targets).mean().backward()
        optimizer.step()
    batch, batch_targets = points(16, 8)
    weights = weights_for(model, batch, 1 - batch_targets)
    assert weights.tolist() == [0.0] * 16
    agreeing = weights_for(model, batch, batch_targets)
    assert float(agreeing.sum()) == pytest.approx(1.0, abs=1e-5)


def test_weights_are_the_positive_part_of_gold_and_example_gradient_agreement() -> None:
    # d gold_loss(theta - step * sum_i eps_i grad_i) / d eps_i at eps = 0 is -step * (gold gradient . grad_i)
    torch.manual_seed(1)
    model = Linear2D()
    features, targets = points(10, 1)
    noisy = torch.where(torch.arange(10) % 3 == 0, 1 - targets, targets)
    gold_features, gold_targets = points(32, 99)

    def gradient(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        model.zero_grad()
        per_example(model(x), y).mean().backward()
        return torch.cat([parameter.grad.flatten().clone() for parameter in model.parameters()])

    gold = gradient(gold_features, gold_targets)
    agreement = torch.stack([gold @ gradient(features[i : i + 1], noisy[i : i + 1]) for i in range(10)])
    for parameter in model.parameters():
        parameter.grad = None
    expected = agreement.clamp(min=0) / agreement.clamp(min=0).sum()
    assert bool((agreement < 0).any()) and bool((agreement > 0).any())
    assert torch.allclose(weights_for(model, features, noisy), expected, atol=1e-5)


def test_the_virtual_step_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    model = Linear2D()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    features, targets = points(12, 9)
    weights_for(model, features, targets)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert all(parameter.grad is None for parameter in model.parameters())


def test_the_step_size_is_normalised_out_for_small_steps() -> None:
    # to first order the weights are proportional to step_size, which the normalisation divides out
    torch.manual_seed(4)
    model = Linear2D()
    features, targets = points(20, 4)
    noisy = torch.where(torch.arange(20) % 5 == 0, 1 - targets, targets)
    small = weights_for(model, features, noisy, step_size=1e-3)
    smaller = weights_for(model, features, noisy, step_size=1e-4)
    assert torch.allclose(small, smaller, atol=1e-3)
    assert ((small > 0) == (smaller > 0)).all()


# --- in the trainer ------------------------------------------------------------------------------------------------


@pytest.fixture
def small_project(tmp_path: Path) -> Iterator[Project]:
    project = student_project(tmp_path, "classify", pool=24, demo=8, test=8)
    yield project
    project.close()


def test_a_reweighted_training_run_completes_and_uses_the_learned_weights(
        small_project: Project, tiny_encoder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    real = reweight.example_weights

    def recording(model: nn.Module, inputs: Any, targets: torch.Tensor, gold_inputs: Any,
                  gold_targets: torch.Tensor, loss_fn: Any, step_size: float) -> torch.Tensor:
        weights = real(model, inputs, targets, gold_inputs, gold_targets, loss_fn, step_size)
        calls.append({"batch": targets.shape[0], "gold": gold_targets.shape[0], "step": step_size,
                      "weights": weights.detach().clone()})
        return weights

    monkeypatch.setattr(reweight, "example_weights", recording)
    report = train_student(small_project, tiny_encoder, tmp_path, epochs=1, reweight=True)

    assert [call["batch"] for call in calls] == [8, 8, 8]  # every LLM batch of the one epoch was reweighted
    assert all(call["gold"] == 8 for call in calls)  # a gold batch from the demo split
    assert all(call["step"] > 0 for call in calls)
    for call in calls:
        weights = call["weights"]
        assert bool((weights >= 0).all())
        assert float(weights.sum()) == pytest.approx(1.0, abs=1e-5) or float(weights.sum()) == 0.0

    (run,) = small_project.store.student_runs()
    assert run["status"] == "done" and run["id"] == report.run_id
    assert run["metrics"]["test"]["n"] == 8
    assert report.trained_on == 24

    monkeypatch.setattr(reweight, "example_weights", real)
    plain = train_student(small_project, tiny_encoder, tmp_path, epochs=1, reweight=False)
    assert sha256_file(plain.folder / "model.safetensors") != sha256_file(report.folder / "model.safetensors")
