"""CLIP image encoders as the feature extractor: ``model.backbone: open_clip/<arch>``.

CLIP (Radford et al. 2021, "Learning transferable visual models from natural language
supervision") through open_clip (Ilharco et al. 2021): ``open_clip.create_model(arch)``'s image
tower gives the features, L2-normalised as CLIP compares them, so that a linear head whose rows are
the normalised text embeddings of "a photo of a {class}." times CLIP's logit scale gives CLIP's
zero-shot logits exactly (``model.head: zero_shot``: the head's initial weights; the run then
fine-tunes or adapts from there). The input is CLIP's: its image size, bicubic resizes, a crop
keeping the whole resized side (crop_pct 1), OpenAI's mean and std (the model's ``preprocess_cfg``).

Weights come from a local file only (``model.weights: PATH``: an open_clip checkpoint, the image
and text towers, PyTorch or safetensors), read with open_clip's own key conversions. The text tower
is kept outside the module tree: it never trains and is not checkpointed; it is dropped once the
head is built.
"""
from __future__ import annotations

import difflib
import logging
from functools import partial
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from da.errors import DAError
from da.models.backbone_entry import BackboneEntry, configured
from da.models.param_blocks import ParamView
from da.models.pretrained import PretrainedCfg, mismatch, read_state_dict
from da.models.test_time_norm import has_batch_norm
from da.registry import BACKBONES

PREFIX = "open_clip"
#: CLIP's zero-shot prompt (Radford et al. 2021, the single prompt of their ablation).
TEMPLATES = ("a photo of a {}.",)


def _open_clip():
    import open_clip  # slow to import: only runs naming an open_clip model pay it

    return open_clip


class _NoWeightsNotice(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded" warning: da loads ``model.weights`` itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def _create(arch: str, **kwargs: Any) -> nn.Module:
    quiet = _NoWeightsNotice()
    logging.getLogger().addFilter(quiet)
    try:
        return _open_clip().create_model(arch, pretrained=None, **kwargs)
    finally:
        logging.getLogger().removeFilter(quiet)


class ClipImageFeatures(nn.Module):
    """A CLIP model's image tower: (N, C, H, W) -> (N, embed_dim), L2-normalised; grey images repeated
    to 3 channels. Blocks: ``stem`` (patch embedding, class and position embeddings, ``ln_pre``), the
    transformer's ``blocks.N``, ``head`` (``ln_post`` and the projection) for a ViT tower."""

    def __init__(self, clip: nn.Module, arch: str) -> None:
        super().__init__()
        self.visual = clip.visual
        self.out_features = int(clip.visual.output_dim)
        self.arch = arch
        object.__setattr__(self, "_clip", clip)  # not a submodule: the text tower neither trains nor is saved

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return F.normalize(self.visual(x), dim=-1)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [(name, ParamView(self.visual, names)) for name, names in visual_groups(self.visual)]

    def load_weights_file(self, path: Path, key: str) -> None:
        """An open_clip checkpoint (both towers) into the whole CLIP model, with open_clip's conversions."""
        if self._clip is None:
            raise DAError(f"{key}: the CLIP model's text tower was dropped; load weights before building the head")
        from open_clip.factory import convert_state_dict, resize_pos_embed

        clip = self._clip
        state = read_state_dict(path, key)
        try:
            state = convert_state_dict(clip, state)
            resize_pos_embed(state, clip)
        except Exception:  # another architecture's keys
            pass
        own = clip.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected:
            raise DAError(mismatch(f"{key}: {path}", missing, unexpected))
        if shapes:
            raise DAError(f"{key}: {path} does not fit model.backbone ({shapes[0]} is {tuple(state[shapes[0]].shape)}, "
                          f"the model's {tuple(own[shapes[0]].shape)}); give the weights file of the same architecture")
        clip.load_state_dict(state)

    @torch.no_grad()
    def zero_shot_weights(self, class_names: list[str], templates: tuple[str, ...] = TEMPLATES) -> Tensor:
        """(classes, embed_dim): per class, the normalised mean of its prompts' normalised text embeddings,
        times CLIP's logit scale; then the text tower is released."""
        clip = self._clip
        tokenizer = _open_clip().get_tokenizer(self.arch)
        device = next(self.visual.parameters()).device
        rows = []
        for name in class_names:
            tokens = tokenizer([t.format(name) for t in templates]).to(device)
            text = F.normalize(clip.to(device).encode_text(tokens).float(), dim=-1).mean(0)
            rows.append(F.normalize(text, dim=-1))
        weights = torch.stack(rows) * clip.logit_scale.exp().float()
        object.__setattr__(self, "_clip", None)
        return weights


def visual_groups(visual: nn.Module) -> list[tuple[str, list[str]]]:
    """The image tower's parameter names per block: stem, ``blocks.N`` per residual block, head."""
    names = [n for n, _ in visual.named_parameters()]
    blocks = sorted({int(n.split(".")[2]) for n in names if n.startswith("transformer.resblocks.")})
    if not blocks:  # a ResNet or timm tower: one block, the whole tower
        return [("tower", names)]
    stem = [n for n in names if not n.startswith(("transformer.", "ln_post", "proj", "attn_pool"))]
    head = [n for n in names if n.startswith(("ln_post", "proj", "attn_pool"))]
    per_block = [(f"blocks.{i}", [n for n in names if n.startswith(f"transformer.resblocks.{i}.")]) for i in blocks]
    return [("stem", stem), *per_block, *([("head", head)] if head else [])]


def clip_entry(arch: str, input_size: Optional[int] = None, kwargs: Optional[dict[str, Any]] = None) -> BackboneEntry:
    """The entry of ``open_clip/<arch>``, read from the model built on the meta device."""
    open_clip = _open_clip()
    known = open_clip.list_models()
    if arch not in known:
        near = difflib.get_close_matches(arch, known, n=3)
        hint = f"; closest: {', '.join(near)}" if near else "; open_clip.list_models() lists them"
        raise DAError(f"model.backbone: open_clip has no model {arch!r}{hint}")
    kwargs = {**({"force_image_size": input_size} if input_size else {}), **(kwargs or {})}
    try:
        with torch.device("meta"):
            clip = _create(arch, device="meta", **kwargs)
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DAError(f"model.backbone open_clip/{arch}: open_clip.create_model rejects {kwargs or 'its defaults'} "
                      f"({text[:160]}); check model.input_size and model.backbone_kwargs") from None
    pre = open_clip.get_model_preprocess_cfg(clip)
    size = pre["size"] if isinstance(pre["size"], (tuple, list)) else (pre["size"], pre["size"])
    cfg = PretrainedCfg((3, *size), tuple(pre["mean"]), tuple(pre["std"]), "resize_crop_flip", "center_crop",
                        pre.get("interpolation", "bicubic"), 1.0)
    return BackboneEntry(f"{PREFIX}/{arch}", f"open_clip {arch} image encoder (CLIP)", partial(build_clip, arch, kwargs),
                         cfg, has_batch_norm([clip.visual]), tuple(n for n, _ in visual_groups(clip.visual)),
                         int(clip.visual.output_dim), "open_clip_torch", None,
                         configure=partial(configured, clip_entry, arch), text_encoder=True)



def build_clip(arch: str, kwargs: dict[str, Any], pretrained: bool = False, in_channels: int = 3) -> ClipImageFeatures:
    """The CLIP model ``arch`` (randomly initialised; ``model.weights`` fills it), as its image features."""
    if pretrained:
        raise DAError(f"model.pretrained: open_clip/{arch} takes its weights from a local file: set model.weights: PATH "
                      f"(an open_clip checkpoint) and model.pretrained: false")
    # the default device: "meta" when the config checks build it without memory
    return ClipImageFeatures(_create(arch, device=torch.empty(0).device, **kwargs), arch)


BACKBONES.add_family(PREFIX, clip_entry)
