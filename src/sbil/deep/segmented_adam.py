"""Fused Adam over stacked learners, stepped segment by segment so that a learner's update does
not depend on which other learners share its stack.

Why: torch's fused CPU Adam runs over each tensor in SIMD blocks and finishes the last
``numel mod width`` elements in a scalar loop, whose rounding can differ from the vector
path's by one unit in the last place. In a stacked parameter ``[K, ...]`` whose per-learner
size is not a multiple of the vector width (an output bias ``[K, 1, 2]`` of 2 floats per
learner), *which* learners fall in that tail depends on ``K``: BC's seed 9 trained in a stack
of 10 (20 bias floats: 16 vector, 4 scalar) and in a stack of 30 (60: 48 vector, 12 scalar)
first differs at update 60, by 4e-9, and float32 training amplifies that over 10,000 updates.
Stepping each segment ``[K_i, ...]`` of the stack as its own tensor gives each segment
exactly the arithmetic it gets alone, so stacks of several groups (a sweep's k values) train
each group bit for bit as its own stack does.

The state (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter) is torch's Adam's, so
checkpoints are interchangeable with a plain ``torch.optim.Adam(fused=True)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = ["SegmentedAdam"]


class SegmentedAdam(torch.optim.Adam):
    """``torch.optim.Adam(fused=True)`` whose step treats each of ``segments`` (sizes along
    every parameter's first, stacked, dimension, summing to its length) as its own tensor.

    ``segments`` None, or a single segment, is exactly torch's fused step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        *,
        segments: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(params, fused=True, **kwargs)
        self.segments = None if segments is None or len(segments) <= 1 else tuple(segments)
        for group in self.param_groups:
            if group["amsgrad"] or group["maximize"] or group.get("decoupled_weight_decay"):
                raise ValueError("SegmentedAdam supports plain Adam only (no amsgrad, maximize).")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        if self.segments is None:
            return super().step(closure)
        if closure is not None:
            raise ValueError("SegmentedAdam.step takes no closure.")
        for group in self.param_groups:
            params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.shape[0] != sum(self.segments):
                    raise ValueError(
                        f"a parameter of shape {tuple(p.shape)} does not stack "
                        f"{sum(self.segments)} learners (segments {self.segments})."
                    )
                state = self.state[p]
                if not state:  # as torch's Adam initialises it (fused: float32 step)
                    state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                n = len(self.segments)
                params += p.split(self.segments)
                grads += p.grad.split(self.segments)
                exp_avgs += state["exp_avg"].split(self.segments)
                exp_avg_sqs += state["exp_avg_sq"].split(self.segments)
                state["step"] += 1
                steps += [state["step"].clone() for _ in range(n)]  # the kernel reads, per tensor
            if not params:
                continue
            beta1, beta2 = group["betas"]
            torch._fused_adam_(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                amsgrad=False,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=group["eps"],
                maximize=False,
                grad_scale=None,
                found_inf=None,
            )
        return None
