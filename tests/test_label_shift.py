"""Label-set shift (partial, open-set, universal): class sets, their metrics, PADA, OSBP, OVANet, SHOT's
variants, and the refusals (da.data.label_sets, da.train.label_metrics, docs/label_shift.md)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import one_line_error, tiny_config

from da.adapters.class_weights import TargetClassWeights
from da.adapters.osbp import OSBP, unknown_bce
from da.adapters.ovanet import OVANet, open_entropy, ova_loss
from da.data.dataset_entry import register_dataset
from da.data.label_sets import LabelSets, check_classes, resolve
from da.data.synthetic import synthetic
from da.errors import DAError
from da.models.unknown import EntropyRule, decide, two_means
from da.train.label_metrics import open_set_metrics


@register_dataset("synthetic_relabelled", num_classes=4)
def synthetic_relabelled(root, download, role):
    """The synthetic pair with target classes 2 and 3 swapped in its labels (the images unchanged)."""
    data = synthetic(root, download, role)
    if role == "source":
        return data
    swap = torch.tensor([0, 1, 3, 2])
    return dataclasses.replace(data, train=dataclasses.replace(data.train, y=swap[data.train.y]),
                               test=dataclasses.replace(data.test, y=swap[data.test.y]))


# ---- class sets and settings ---------------------------------------------------------------------

@pytest.mark.parametrize("source, target, setting", [
    ("0123", "0123", "closed"), ("0123", "01", "partial"), ("01", "0123", "open_set"), ("012", "123", "universal")])
def test_setting_follows_from_the_two_sets(source, target, setting):
    sets = resolve(list(source), list(target), None, True, "s -> t")
    assert sets.setting == setting
    assert sets.open == (setting in ("open_set", "universal"))
    assert set(sets.shared) == set(source) & set(target)


def test_resolve_refuses_what_does_not_fit():
    with pytest.raises(DAError, match="share no class"):
        resolve(["0", "1"], ["2", "3"], None, True, "s -> t")
    with pytest.raises(DAError, match="that is the universal setting; set data.setting: universal"):
        resolve(["0", "1", "2"], ["1", "2", "3"], "partial", True, "s -> t")
    with pytest.raises(DAError, match="classes differ"):  # no classes list, no setting: a misnamed folder?
        resolve(["0", "1"], ["0", "1", "2"], None, False, "s -> t")


def test_check_classes_names_what_is_wrong():
    names = ["0", "1", "2", "3"]
    assert check_classes([2, 0], names, "usps", "data.target") == ["0", "2"]  # the domain's label order
    with pytest.raises(DAError, match="names 12, which usps does not have"):
        check_classes([0, 12], names, "usps", "data.target")
    with pytest.raises(DAError, match="twice"):
        check_classes([1, 1], names, "usps", "data.target")
    with pytest.raises(DAError, match="non-empty list"):
        check_classes([], names, "usps", "data.target")


def test_target_labels_follow_the_source_label_space():
    from da.config import DataConfig
    from da.domains import load_domains

    d = load_domains(DataConfig(source={"name": "synthetic", "classes": [1, 3]}, target="synthetic",
                                source_val_size=16), torch.device("cpu"))
    assert d.setting == "open_set" and d.num_classes == 2 and d.label_sets.unknown == 2
    assert set(d.source_train.y.tolist()) == {0, 1}  # source classes 1 and 3 are labels 0 and 1
    full = synthetic(None, False, "target").test.y
    expected = torch.tensor([2, 0, 2, 1])[full]  # 1 -> 0, 3 -> 1, the target-private 0 and 2 -> unknown
    assert torch.equal(d.target_test.y, expected)
    assert (d.target_train.y == -1).all()  # training never sees a target label


def test_partial_target_keeps_only_its_classes():
    from da.config import DataConfig
    from da.domains import load_domains

    d = load_domains(DataConfig(source="synthetic", target={"name": "synthetic", "classes": [0, 2]},
                                source_val_size=16), torch.device("cpu"))
    assert d.setting == "partial" and d.num_classes == 4
    assert set(d.target_test.y.tolist()) == {0, 2} and len(d.target_train) == 128


# ---- metrics ---------------------------------------------------------------------------------------

def test_open_set_metrics_match_a_hand_computation():
    # rows: true class (known 0, 1; unknown 2); columns: predictions
    confusion = torch.tensor([[8, 1, 1],    # class 0: 8/10
                              [0, 3, 1],    # class 1: 3/4
                              [2, 2, 6]])   # unknown: 6/10
    m = open_set_metrics(confusion, [0, 1], 2)
    os_star, unk = (0.8 + 0.75) / 2, 0.6
    assert m["os_star"] == pytest.approx(os_star)
    assert m["unknown_acc"] == pytest.approx(unk)
    assert m["os"] == pytest.approx((0.8 + 0.75 + 0.6) / 3)
    assert m["h_score"] == pytest.approx(2 * os_star * unk / (os_star + unk))


def test_h_score_is_zero_when_nothing_is_called_unknown():
    confusion = torch.tensor([[5, 0, 0], [0, 5, 0], [3, 2, 0]])
    m = open_set_metrics(confusion, [0, 1], 2)
    assert m["os_star"] == 1.0 and m["unknown_acc"] == 0.0 and m["h_score"] == 0.0
    assert m["os"] == pytest.approx(2 / 3)  # OS still looks good: why the field reports H


def test_decide_and_the_rules():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 5.0]])
    mask = torch.tensor([False, True, False])
    assert decide(logits, 3, mask).tolist() == [0, 3, 2]
    assert decide(logits, None, mask).tolist() == [0, 0, 2]
    rule = EntropyRule(0.5)
    assert rule(None, logits).tolist() == [False, True, False]
    centres, high = two_means(torch.tensor([0.1, 0.12, 0.9, 0.95, 0.11]))
    assert high.tolist() == [False, False, True, True, False] and centres[0] < centres[1]


# ---- PADA's class weights --------------------------------------------------------------------------

def test_pada_weights_come_from_target_predictions_only_and_sum_to_k():
    w = TargetClassWeights(4, temperature=1.0, momentum=0.0)
    logits_t = torch.tensor([[5.0, 0, 0, 0], [4.0, 0, 0, 0], [0, 6.0, 0, 0]])
    w.update(logits_t)
    gamma = w.weights()
    assert gamma.sum().item() == pytest.approx(4.0)
    assert gamma[0] > gamma[1] > gamma[2] and gamma[2] == pytest.approx(gamma[3])
    expected = logits_t.softmax(1).mean(0)
    assert torch.allclose(gamma, expected * 4 / expected.sum())
    d = w.domain_weights(torch.tensor([0, 2]), 3)  # source by class, target at the source batch's mean
    assert torch.allclose(d, torch.cat([gamma[[0, 2]], gamma[[0, 2]].mean().expand(3)]))


def test_pada_ignores_source_images_for_its_weights():
    from da.adapters.pada import PADA

    a, b = PADA(8, 4), PADA(8, 4)
    f_t, logits_t = torch.randn(6, 8), torch.randn(6, 4)
    a.loss(torch.randn(6, 8), f_t, logits_s=torch.randn(6, 4), logits_t=logits_t, y_s=torch.tensor([0, 1, 2, 3, 0, 1]),
           progress=0.5)
    b.loss(torch.randn(6, 8), f_t, logits_s=torch.randn(6, 4), logits_t=logits_t, y_s=torch.tensor([3, 3, 3, 3, 3, 3]),
           progress=0.5)
    assert torch.equal(a.class_weight(), b.class_weight())
    assert a.class_weight().sum().item() == pytest.approx(4.0)


# ---- OSBP ------------------------------------------------------------------------------------------

def test_osbp_loss_is_tllibs_and_minimal_at_t():
    logits = torch.randn(5, 4)
    p = logits.softmax(1)[:, -1:]  # TLlib's UnknownClassBinaryCrossEntropy, written out
    tllib = -torch.mean(0.5 * torch.log(p + 1e-6)) - torch.mean(0.5 * torch.log(1 - p + 1e-6))
    assert unknown_bce(logits, 0.5).item() == pytest.approx(tllib.item(), rel=1e-6)
    for t in (0.3, 0.5, 0.7):  # over the unknown logit, the loss is lowest where p(unknown) = t
        grid = torch.linspace(-6, 6, 1201)
        rows = torch.stack([torch.zeros_like(grid), torch.zeros_like(grid), grid], 1)
        best = rows[unknown_bce_rows(rows, t).argmin()]
        assert best.softmax(0)[-1].item() == pytest.approx(t, abs=0.01)


def unknown_bce_rows(rows, t):
    return torch.stack([unknown_bce(r.unsqueeze(0), t) for r in rows])


def test_osbp_reverses_the_gradient_into_the_extractor_only():
    from da.stages.joint import reverse_gradient

    torch.manual_seed(0)
    head = torch.nn.Linear(3, 4)
    z = torch.randn(6, 3, requires_grad=True)
    unknown_bce(head(z)).backward()
    plain_z, plain_w = z.grad.clone(), head.weight.grad.clone()
    z.grad = None
    head.zero_grad()
    unknown_bce(head(reverse_gradient(z))).backward()
    assert torch.allclose(z.grad, -plain_z)  # the extractor's side: reversed
    assert torch.allclose(head.weight.grad, plain_w)  # the head's: as is
    assert OSBP().head_extra == 1 and OSBP.reversed_target_logits


# ---- OVANet ----------------------------------------------------------------------------------------

def authors_ova_loss(out_open, label):  # VisionLearningGroup/OVANet utils/loss.py (on CPU)
    out_open = F.softmax(out_open, 1)
    label_p = torch.zeros((out_open.size(0), out_open.size(2))).long()
    label_range = torch.arange(0, out_open.size(0)).long()
    label_p[label_range, label] = 1
    label_n = 1 - label_p
    open_loss_pos = torch.mean(torch.sum(-torch.log(out_open[:, 1, :] + 1e-8) * label_p, 1))
    open_loss_neg = torch.mean(torch.max(-torch.log(out_open[:, 0, :] + 1e-8) * label_n, 1)[0])
    return open_loss_pos, open_loss_neg


def authors_open_entropy(out_open):
    out_open = F.softmax(out_open, 1)
    return torch.mean(torch.mean(torch.sum(-out_open * torch.log(out_open + 1e-8), 1), 1))


def test_ovanet_losses_equal_the_authors():
    torch.manual_seed(0)
    out, label = torch.randn(7, 2, 5), torch.randint(0, 5, (7,))
    for ours, theirs in zip(ova_loss(out, label), authors_ova_loss(out, label)):
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert open_entropy(out).item() == pytest.approx(authors_open_entropy(out).item(), rel=1e-6)


def test_ovanet_calls_unknown_what_the_predicted_class_rejects():
    a = OVANet(feature_dim=2, num_classes=2)
    with torch.no_grad():  # rows 0-1: "not class k", rows 2-3: "class k"; feature 0 says class 0, feature 1 rejects all
        a.ova.weight.copy_(torch.tensor([[-5.0, 5.0], [0.0, 5.0], [5.0, -5.0], [0.0, -5.0]]))
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    logits = torch.tensor([[3.0, 0.0], [3.0, 0.0]])
    assert a.unknown(z, logits).tolist() == [False, True]
    f_s = torch.randn(4, 2, requires_grad=True)
    f_t = torch.randn(4, 2, requires_grad=True)
    loss, _ = a.loss(f_s, f_t, logits_s=torch.randn(4, 2), logits_t=torch.randn(4, 2), y_s=torch.tensor([0, 1, 0, 1]),
                     progress=0.5)
    loss.backward()
    assert f_s.grad.abs().sum() > 0 and f_t.grad.abs().sum() > 0  # both domains


# ---- runs ------------------------------------------------------------------------------------------

OPEN = {"source": {"name": "synthetic", "classes": [0, 1]}, "target": "synthetic", "source_val_size": 32}


def folder(path):
    path.mkdir()
    return path


def config(adapter: dict, **sections) -> dict:
    """``tiny_config`` with ``adapter`` in place of its dann (not merged into it)."""
    cfg = tiny_config(**sections)
    cfg["adapter"] = adapter
    return cfg


def test_an_open_set_run_reports_the_settings_figures(tmp_path):
    from da.composition import build_config, train

    summary = train(build_config(config({"name": "osbp"}, data=OPEN)), folder(tmp_path / "run"), show_progress=False)
    assert summary["setting"] == "open_set"
    assert summary["label_sets"]["target_private"] == ["2", "3"]
    for key in ("os", "os_star", "unknown_acc", "h_score"):
        assert 0 <= summary[key] <= 1
        assert key in summary["selection"]["last"]
    assert len(summary["target_test_confusion"]) == 3  # two known classes and unknown
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("h_score" in row for row in rows if row.get("stage") == "adapt")


def test_target_private_labels_are_never_read(tmp_path):
    """Swapping the labels of the two target-private classes changes nothing a run reports."""
    from da.composition import build_config, train
    from da.train import TIMING_FIELDS

    out = {}
    for name in ("synthetic", "synthetic_relabelled"):
        data = {**OPEN, "target": name}
        out[name] = train(build_config(config({"name": "ovanet"}, data=data)), folder(tmp_path / name),
                          show_progress=False)
    drop = lambda s: {k: v for k, v in s.items() if k not in (*TIMING_FIELDS, "target", "name")}
    assert drop(out["synthetic"]) == drop(out["synthetic_relabelled"])


def test_shot_open_set_variant_fills_its_unknown_rule(tmp_path):
    from da.composition import build_config, train
    from da.evaluate import load_run

    cfg = config({"name": "source_only"}, data=OPEN,
                 stages=["pretrain", {"name": "shot", "epochs": 1, "batch_size": 16, "max_steps": 4}])
    summary = train(build_config(cfg), folder(tmp_path / "run"), show_progress=False)
    assert summary["setting"] == "open_set" and "h_score" in summary
    model, _, _ = load_run(tmp_path / "run")
    assert isinstance(model.unknown, EntropyRule) and 0 < model.unknown.threshold.item() < 1


BAD = [
    ({"data": {"target": {"name": "synthetic", "classes": [0, 7]}}}, "names 7, which synthetic_target does not have"),
    ({"data": {"source": {"name": "synthetic", "classes": [0, 1]}, "target": {"name": "synthetic", "classes": [2, 3]}}},
     "share no class"),
    ({"data": {"source": {"name": "synthetic", "classes": [0, 1]}, "setting": "partial"}},
     "that is the open_set setting"),
    ({"data": {"source": {"name": "synthetic", "classes": [0, 1]}}, "adapter": {"name": "dann"}},
     "closed-set method and cannot predict 'unknown'"),
    ({"adapter": {"name": "osbp"}}, "open-set method"),
    ({"model": {"unknown_threshold": 0.5}}, "applies to the open_set and universal settings"),
    ({"data": {"source": {"name": "synthetic", "classes": [0, 1, 2]}, "target": {"name": "synthetic", "classes": [1, 2, 3]}},
      "adapter": {"name": "osbp"}}, "meant for the open_set settings"),
]


@pytest.mark.parametrize("change, message", BAD)
def test_bad_label_sets_are_one_line_before_a_run_folder(change, message, tmp_path, write_config, cli):
    cfg = config(change.get("adapter", {"name": "source_only"}), model=change.get("model", {}))
    cfg["data"].update(change.get("data", {}))
    cfg["out_root"] = str(tmp_path / "runs")
    code, _, err = cli("train", "-c", write_config(cfg))
    assert code == 2
    assert message in one_line_error(err)
    assert not (tmp_path / "runs").exists()


def test_label_sets_record():
    sets = LabelSets(("0", "1", "2"), ("1", "2", "3"))
    assert sets.record() == {"setting": "universal", "source": ["0", "1", "2"], "target": ["1", "2", "3"],
                             "shared": ["1", "2"], "source_private": ["0"], "target_private": ["3"]}
    assert sets.target_indices() == [1, 2, 3]


def test_image_folders_match_classes_by_name(tmp_path):
    """Folder names are the classes: the source's order is the label order, a target folder the source
    lacks is unknown, and a target ``classes`` list leaves the other folders out."""
    from da.config import DataConfig
    from da.domains import load_domains
    from tests.image_data import write_folder

    write_folder(tmp_path / "s", classes=("b", "a", "c"), per_class=3)
    write_folder(tmp_path / "t", classes=("c", "a", "d"), per_class=3, seed=1)
    cfg = dict(source={"folder": str(tmp_path / "s")}, target={"folder": str(tmp_path / "t")}, source_val_size=2)
    with pytest.raises(DAError, match="classes differ"):
        load_domains(DataConfig(**cfg), torch.device("cpu"))
    d = load_domains(DataConfig(**cfg, setting="universal"), torch.device("cpu"))
    assert d.label_sets.source == ("a", "b", "c") and d.label_sets.target_private == ("d",)
    assert sorted(d.target_test.y.tolist()) == [0] * 3 + [2] * 3 + [3] * 3  # a -> 0, c -> 2, d -> unknown (3)
    partial = {**cfg, "target": {"folder": str(tmp_path / "t"), "classes": ["a", "c"]}}
    d = load_domains(DataConfig(**partial), torch.device("cpu"))
    assert d.setting == "partial" and sorted(d.target_test.y.tolist()) == [0] * 3 + [2] * 3
