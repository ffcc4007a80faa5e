"""Validators that fit or probe something beyond one pass of the model: DEV's domain classifier and
MixVal's mixed target images. Higher is better for both."""
from __future__ import annotations

import torch

from da.validators.inputs import ScoringInputs

MIX_LAMBDA = 0.55  # MixVal's fixed mixup ratio (Hu et al. 2023, its code's --lam)
MIX_BATCH = 128  # its pairs: each image with its mirror in a batch of 128


def deep_embedded_validation(inputs: ScoringInputs, seed: int = 0) -> float:
    """Minus DEV's risk (You et al., ICML 2019, "Towards accurate model selection in deep unsupervised
    domain adaptation"), normalised as DEV-N (``max``; Musgrave et al. 2022).

    The source validation split is halved (seeded): a domain classifier learns the first half
    against the target probe's features, and the second half's per-sample cross-entropy is weighted
    by its density ratio p(target | x) / p(source | x) * N_s / N_t, with DEV's control variate
    (pytorch-adapt's ``get_dev_risk``). The classifier is a logistic regression on standardised
    features whose inverse regularisation is chosen among 0.01, 0.1 and 1 on a held-out fifth, where
    the authors' code picks among nine MLPs: the same estimator at a fraction of the cost.
    """
    from pytorch_adapt.validators.deep_embedded_validator import get_dev_risk
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    n = len(inputs.source_features)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    fit, held = order[: n // 2], order[n // 2 :]
    source, target = inputs.source_features[fit].double().numpy(), inputs.target_features.double().numpy()
    features = torch.cat([torch.from_numpy(source), torch.from_numpy(target)]).numpy()
    domain = [1] * len(source) + [0] * len(target)  # 1 source, 0 target, as the authors' code
    train_x, test_x, train_y, test_y = train_test_split(features, domain, train_size=0.8, random_state=seed, stratify=domain)
    scaler = StandardScaler().fit(train_x)
    best, best_acc = None, -1.0
    for c in (0.01, 0.1, 1.0):
        classifier = LogisticRegression(C=c, max_iter=500).fit(scaler.transform(train_x), train_y)
        acc = classifier.score(scaler.transform(test_x), test_y)
        if acc > best_acc:
            best, best_acc = classifier, acc
    proba = best.predict_proba(scaler.transform(inputs.source_features[held].double().numpy()))
    weights = torch.from_numpy(proba[:, 0] / proba[:, 1] * len(source) / len(target))[:, None]
    logits, labels = inputs.source_logits[:n][held], inputs.source_labels[:n][held]
    errors = -torch.log_softmax(logits.double(), dim=1).gather(1, labels[:, None])  # per-sample cross-entropy
    return -float(get_dev_risk(weights, errors, "max"))


def _ice(inputs: ScoringInputs, order: torch.Tensor, same_label: bool) -> float:
    """MixVal's ICE: the share of mixed probes ``0.55 a + 0.45 b`` that the model labels as ``a``'s
    pseudo-label, over pairs whose pseudo-labels differ (inter-cluster) or agree (intra-cluster)."""
    pseudo = inputs.target_logits.argmax(dim=1)
    correct = total = 0
    for start in range(0, len(order), MIX_BATCH):
        index = order[start : start + MIX_BATCH]
        mirror = torch.arange(len(index) - 1, -1, -1)
        a, b = pseudo[index], pseudo[index][mirror]
        keep = (a == b) if same_label else (a != b)
        if not keep.any():
            continue
        x = inputs.target_images(index)
        mixed = MIX_LAMBDA * x[keep] + (1 - MIX_LAMBDA) * x[mirror][keep]
        correct += (inputs.predict(mixed).argmax(dim=1).cpu() == a[keep]).sum().item()
        total += int(keep.sum())
    # No pair to probe: a collapsed model (one pseudo-label) has no inter-cluster pair, and scores 0, the lowest.
    return correct / total if total else 0.0


def mixval_inter(inputs: ScoringInputs) -> float:
    """MixVal (Hu et al., NeurIPS 2023, "Mixed samples as probes for unsupervised model selection in
    domain adaptation"), its inter-cluster probe: target images mixed with a partner of another
    pseudo-label (the probe's seeded order, each image with its mirror in a batch of 128, as its code),
    scored by how often the prediction keeps the dominant image's pseudo-label. Higher is better."""
    return _ice(inputs, torch.arange(len(inputs.target_logits)), same_label=False)


def mixval_intra(inputs: ScoringInputs) -> float:
    """MixVal's intra-cluster probe: the probe sorted by pseudo-label (stable), so that a mirror pair
    mostly shares one, mixed and scored as :func:`mixval_inter` over the pairs that do."""
    order = torch.sort(inputs.target_logits.argmax(dim=1), stable=True).indices
    return _ice(inputs, order, same_label=True)
