"""Validators that read features: clustering, neighbours and a discrepancy between the source
validation features and the target probe's. Higher is better for every one."""
from __future__ import annotations

from da.validators.inputs import ScoringInputs


def _knn():
    # pytorch-metric-learning's default nearest-neighbour search is faiss, which is not a dependency here.
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.inference import CustomKNN

    return CustomKNN(LpDistance())


def class_ami(inputs: ScoringInputs) -> float:
    """ClassAMI (Musgrave et al. 2022): the adjusted mutual information between the target pseudo-
    labels and a k-means clustering (k = classes) of the target features, pytorch-adapt
    ``ClassClusterValidator``. k-means starts from the pseudo-label centres (``label_centers``), so
    the score is deterministic."""
    from pytorch_adapt.validators import ClassClusterValidator

    validator = ClassClusterValidator(centroid_init="label_centers")
    return float(validator(target_train=inputs.split("target_train")))


def domain_knn(inputs: ScoringInputs) -> float:
    """Minus the precision at 1 of a domain-label 1-NN over the source and target features pooled
    (Musgrave et al. 2022's KNN): high when the two domains' features mix, pytorch-adapt ``KNNValidator``."""
    from pytorch_adapt.validators import KNNValidator

    return float(KNNValidator(knn_func=_knn())(src_train=inputs.split("src_val"), target_train=inputs.split("target_train")))


def target_knn(inputs: ScoringInputs) -> float:
    """Precision at 1 of the target pseudo-labels against the labels of each target sample's nearest
    source feature (Musgrave et al. 2022's TargetKNN), pytorch-adapt ``TargetKNNValidator``."""
    from pytorch_adapt.validators import TargetKNNValidator

    validator = TargetKNNValidator(knn_func=_knn())
    return float(validator(src_train=inputs.split("src_val"), target_train=inputs.split("target_train")))


def negative_mmd(inputs: ScoringInputs) -> float:
    """Minus the multi-kernel MMD between source and target features (Long et al. 2015's DAN kernels;
    as a validator, Musgrave et al. 2022), pytorch-adapt ``MMDValidator``."""
    from pytorch_adapt.validators import MMDValidator

    validator = MMDValidator(mmd_kwargs={"mmd_type": "quadratic"})
    return float(validator(src_train=inputs.split("src_val"), target_train=inputs.split("target_train")))
