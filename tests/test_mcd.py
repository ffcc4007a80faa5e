"""MCD (Saito et al. 2018): the discrepancy and the three sub-steps."""
from __future__ import annotations

import torch

from da.adapters.mcd import discrepancy


def test_discrepancy_is_the_mean_absolute_difference_of_the_softmax_outputs():
    a = torch.tensor([[10.0, -10.0], [0.0, 0.0]])
    b = torch.tensor([[-10.0, 10.0], [0.0, 0.0]])
    assert torch.isclose(discrepancy(a, b), torch.tensor(0.5), atol=1e-4)  # row 1: |1-0| twice; row 2: 0
    assert discrepancy(a, a) == 0
