"""The training engine: a run is a list of stages (``da.stages``) run by one shared step skeleton.

``da.train.skeleton.run_stage`` runs a stage (anything with the members of ``da.train.stage.Stage``):
stop signal, non-finite check, backward, optimizers and schedules, logging, evaluation and
checkpoints are written once there, whatever the stage computes. ``Run`` (``da.train.run``) is what
the stages share; ``Model`` (``da.train.model``) the extractor, adapter and head;
``da.train.selection`` the evaluations and the checkpoint each selection rule picks;
``da.train.summary`` the summary.json contract. ``da.composition.train`` builds a run from a config
and drives its stages through the skeleton.
"""
from da.train.model import Model, accuracy, batched, predictions
from da.train.run import Run, StageContext
from da.train.seeding import pick_device, seed_everything
from da.train.selection import best_evaluation, selections
from da.train.skeleton import lr_factor
from da.train.summary import TIMING_FIELDS

__all__ = ["TIMING_FIELDS", "Model", "Run", "StageContext", "accuracy", "batched", "best_evaluation", "lr_factor",
           "pick_device", "predictions", "seed_everything", "selections"]
