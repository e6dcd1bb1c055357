"""Learned example reweighting (Ren et al. 2018, as used by LLMaAA) with torch.func; imports torch.

Per training batch: give every example a weight eps_i = 0, take one virtual SGD step on sum(eps_i * loss_i), measure
the loss of the virtually updated model on a gold batch, and weight each example by how much up-weighting it would
have lowered that gold loss: w_i = max(-d gold_loss / d eps_i, 0), normalised to sum to 1 (all zero stays zero).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import functional_call, grad

Inputs = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, targets) -> per-example losses


def example_weights(model: torch.nn.Module, inputs: Inputs, targets: torch.Tensor, gold_inputs: Inputs,
                    gold_targets: torch.Tensor, loss_fn: LossFn, step_size: float) -> torch.Tensor:
    """Weights for the examples of one training batch, from a virtual step checked against gold."""
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def gold_loss_after_step(eps: torch.Tensor) -> torch.Tensor:
        def weighted_train_loss(weights: dict[str, torch.Tensor]) -> torch.Tensor:
            logits = functional_call(model, (weights, buffers), kwargs=inputs)
            return (eps * loss_fn(logits, targets)).sum()

        step = grad(weighted_train_loss)(params)
        updated = {name: params[name] - step_size * step[name] for name in params}
        gold_logits = functional_call(model, (updated, buffers), kwargs=gold_inputs)
        return loss_fn(gold_logits, gold_targets).mean()

    eps = torch.zeros(targets.shape[0], device=targets.device)
    raw = torch.clamp(-grad(gold_loss_after_step)(eps), min=0.0)
    total = raw.sum()
    return raw / total if total > 0 else raw
