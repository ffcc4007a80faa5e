"""Unsupervised model selection: score an evaluation without target labels, then pick a step.

Most scores come from pytorch-adapt's validators; DEV's classifier and MixVal are written here.
Musgrave et al. 2022 ("Benchmarking validation methods for unsupervised domain adaptation", arXiv
2208.07360) find that validators often correlate poorly with target accuracy, so a pick is a
reported choice, not a guarantee: ``da validators`` measures how well each one chooses on a task.
"""
from da.validators.catalog import CATALOG, CLASSIC, DEFAULT, VALIDATORS, Validator, needs, resolve, score
from da.validators.inputs import NEEDS, ScoringInputs
from da.validators.pick import PICKS, pick

__all__ = ["CATALOG", "CLASSIC", "DEFAULT", "NEEDS", "PICKS", "VALIDATORS", "ScoringInputs", "Validator", "needs", "pick", "resolve", "score"]
