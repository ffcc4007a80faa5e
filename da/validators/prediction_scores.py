"""Validators that read only predictions: the source validation accuracy and pytorch-adapt's
prediction-based validators on the target probe. Higher is better for every one."""
from __future__ import annotations

from da.validators.inputs import ScoringInputs


def source_val(inputs: ScoringInputs) -> float:
    """Accuracy on the labelled source validation split (the reverse of any shift: no target read)."""
    predicted = inputs.source_logits.argmax(dim=1)
    return (predicted == inputs.source_labels).float().mean().item()


def information_maximization(inputs: ScoringInputs) -> float:
    """IM: H(mean prediction) - mean H(prediction) (Shi & Sha 2012; as a validator, Musgrave et al.
    2022), pytorch-adapt ``IMValidator`` on logits."""
    from pytorch_adapt.validators import IMValidator

    return float(IMValidator()(target_train=inputs.split("target_train", with_features=False)))


def soft_neighborhood_density(inputs: ScoringInputs) -> float:
    """SND (Saito et al., ICCV 2021): mean entropy of each target sample's softmax over its cosine
    similarities (temperature 0.05) to the other target samples, pytorch-adapt ``SNDValidator`` on
    softmax predictions. Collapsed predictions score high too: density alone cannot tell."""
    from pytorch_adapt.validators import SNDValidator

    return float(SNDValidator()(target_train=inputs.split("target_train", with_features=False)))


def negative_entropy(inputs: ScoringInputs) -> float:
    """Minus the mean prediction entropy (Morerio et al. 2018), pytorch-adapt ``EntropyValidator``."""
    from pytorch_adapt.validators import EntropyValidator

    return float(EntropyValidator()(target_train=inputs.split("target_train", with_features=False)))


def batch_nuclear_norm(inputs: ScoringInputs) -> float:
    """BNM (Cui et al., CVPR 2020; as a validator, Musgrave et al. 2022): the nuclear norm of the
    target softmax matrix over its rows, pytorch-adapt ``BNMValidator``: confident and diverse."""
    from pytorch_adapt.validators import BNMValidator

    return float(BNMValidator()(target_train=inputs.split("target_train", with_features=False)))


def diversity(inputs: ScoringInputs) -> float:
    """The entropy of the mean target prediction (the diversity term of IM and of SHOT, Liang et al.
    2020; as a validator, Musgrave et al. 2022), pytorch-adapt ``DiversityValidator``."""
    from pytorch_adapt.validators import DiversityValidator

    return float(DiversityValidator()(target_train=inputs.split("target_train", with_features=False)))


def nearest_source(inputs: ScoringInputs) -> float:
    """Nearest-source accuracy (Musgrave et al. 2022's NearestSource): each target sample takes the
    correctness of its nearest source validation sample (cosine similarity of softmax predictions),
    pytorch-adapt ``NearestSourceValidator``."""
    from pytorch_adapt.validators import NearestSourceValidator

    return float(NearestSourceValidator()(src_val=inputs.split("src_val", with_features=False),
                                          target_train=inputs.split("target_train", with_features=False)))
