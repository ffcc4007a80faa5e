"""The task head: a linear classifier on (possibly adapted) features."""
from torch import nn


def linear_head(in_features: int, num_classes: int) -> nn.Linear:
    """A linear classifier, as in the digits literature's LeNet (500 -> classes)."""
    return nn.Linear(in_features, num_classes)
