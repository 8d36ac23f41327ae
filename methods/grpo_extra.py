"""grpo_extra: GRPO + extra rollouts, the LTE paper's ablation row (arXiv 2510.26109, Tab. 1).

Identical to `lte` (methods/lte.py) except that the G extra rollouts for an all-fail group are
sampled from the *unhinted* prompt. They are on-policy samples, so correct ones replace failed
ones in the group and take the ordinary clipped loss; this isolates what the hint adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.core.knobs import knob
from harness.core.registry import register_method
from methods.lte import LTE


@register_method("grpo_extra")
@dataclass
class GRPOExtra(LTE):
    hint: bool = knob(False, "the extra rollouts get no hint")
