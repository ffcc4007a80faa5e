"""Self-training: the EMA teacher, strong augmentation, and the self_train stage."""
from __future__ import annotations

import torch
from torch import nn

from da.data.strong_augment import StrongAugment
from da.stages.teacher import EMATeacher
from conftest import one_line_error, tiny_config


def test_the_teacher_is_the_moving_average_of_the_student():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = EMATeacher({"net": student}, decay=0.9, ramp=False)
    expected = [p.detach().clone() for p in student.parameters()]
    for _ in range(3):
        with torch.no_grad():
            for p in student.parameters():
                p.add_(torch.randn_like(p))
        student(torch.randn(5, 3))  # moves the batch-norm running statistics
        teacher.update({"net": student})
        expected = [0.9 * e + 0.1 * p.detach() for e, p in zip(expected, student.parameters())]
    for e, p in zip(expected, teacher.parts["net"].parameters()):
        assert torch.allclose(e, p, atol=1e-6)
    assert torch.equal(teacher.parts["net"][1].running_mean, student[1].running_mean)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_a_teacher_with_decay_one_is_the_frozen_source_model():
    student = nn.Linear(3, 2)
    teacher = EMATeacher({"net": student}, decay=1.0)
    before = teacher.parts["net"].weight.clone()
    with torch.no_grad():
        student.weight.add_(1.0)
    teacher.update({"net": student})
    assert torch.equal(teacher.parts["net"].weight, before)


def test_the_ramp_lets_the_teacher_follow_closely_at_first():
    teacher = EMATeacher({"net": nn.Linear(2, 2)}, decay=0.999)
    assert teacher.current_decay() == 0.0
    teacher.update({"net": nn.Linear(2, 2)})
    assert teacher.current_decay() == 0.5


def test_strong_augmentation_is_seeded_per_image_and_stays_in_range():
    x = torch.rand(6, 1, 28, 28) * 2 - 1
    a = StrongAugment(torch.Generator().manual_seed(3))(x)
    b = StrongAugment(torch.Generator().manual_seed(3))(x)
    assert torch.equal(a, b)
    assert a.min() >= -1 and a.max() <= 1
    assert not torch.allclose(a[0], x[0])
    assert not torch.allclose(a[0] - x[0], a[1] - x[1]), "each image draws its own transform"


SELF_TRAIN = {**tiny_config(), "adapter": {"name": "source_only"},
              "stages": ["pretrain", {"name": "self_train", "steps": 6, "batch_size": 16, "threshold": 0.5}]}


def test_self_training_composes_with_an_adapter_and_resumes_exactly(tmp_path, monkeypatch):
    from methods_helpers import resumed_equals_uninterrupted

    config = {**SELF_TRAIN, "adapter": {"name": "dann", "hidden": 16},
              "stages": ["pretrain", "adapt", {"name": "self_train", "steps": 6, "batch_size": 16,
                                               "thresholds": "adaptive", "consistency_weight": 1.0}]}
    resumed_equals_uninterrupted(config, tmp_path, monkeypatch, "self_train", 3)


def test_a_frozen_source_teacher_without_source_batches_resumes_exactly(tmp_path, monkeypatch):
    from methods_helpers import resumed_equals_uninterrupted

    config = {**SELF_TRAIN, "stages": ["pretrain", {"name": "self_train", "steps": 6, "batch_size": 16,
                                                    "teacher": "source", "source_weight": 0.0}]}
    resumed_equals_uninterrupted(config, tmp_path, monkeypatch, "self_train", 4)


def test_self_training_before_any_source_training_is_one_line(cli, write_config):
    path = write_config({**SELF_TRAIN, "pretrain": {"steps": 0}, "stages": [{"name": "self_train", "steps": 6}]})
    code, _, err = cli("train", "-c", path, "--dry-run")
    assert code == 2
    assert "self_train" in one_line_error(err)


def test_a_bad_self_training_setting_is_one_line(cli, write_config):
    path = write_config({**SELF_TRAIN, "stages": ["pretrain", {"name": "self_train", "teacher": "oracle"}]})
    code, _, err = cli("train", "-c", path, "--out", path.parent / "run")
    assert code == 2
    assert "teacher" in one_line_error(err)


def test_final_model_teacher_makes_the_mean_teacher_the_runs_model(tmp_path):
    from da.checkpoint import load_checkpoint
    from da.composition import build_config, train

    def run(final_model: str) -> dict:
        stage = {"name": "self_train", "steps": 6, "batch_size": 16, "threshold": 0.5, "final_model": final_model}
        (tmp_path / final_model).mkdir()
        train(build_config({**SELF_TRAIN, "stages": ["pretrain", stage]}), tmp_path / final_model, show_progress=False)
        return load_checkpoint(tmp_path / final_model / "checkpoint.pt")

    teacher, student = run("teacher"), run("student")
    ema = teacher["stage_state"]["teacher"]
    for key, value in teacher["extractor"].items():
        assert torch.equal(value, ema[f"parts.extractor.{key}"]), key
        assert torch.equal(student["stage_state"]["teacher"][f"parts.extractor.{key}"], value), "same path until the end"
    assert not torch.equal(teacher["head"]["weight"], student["head"]["weight"]), "the student is not the teacher"


def test_final_model_teacher_needs_an_ema_teacher(cli, write_config):
    path = write_config({**SELF_TRAIN, "stages": ["pretrain", {"name": "self_train", "teacher": "source",
                                                               "final_model": "teacher"}]})
    code, _, err = cli("train", "-c", path, "--out", path.parent / "run")
    assert code == 2
    assert "final_model" in one_line_error(err)
