"""Any timm model as the feature extractor: ``model.backbone: timm/<model>[.<tag>]``.

timm (Wightman 2019, "PyTorch Image Models") builds the network with ``timm.create_model(name,
pretrained=False, num_classes=0)``: its pooled features, ``num_features`` wide. What the config
checks need (feature width, blocks, batch norm, whether an input size fits) is read from the model
built on the ``meta`` device, without memory or initialisation. The input its weights expect is
timm's ``resolve_model_data_config`` (input size, interpolation, crop_pct, mean, std) for the tag
named (the model's default tag otherwise): the data pipeline's presets follow it.
``model.input_size`` builds the model for another square size (timm's ``img_size`` where the model
takes one; a convolutional network takes any size that its downsampling leaves non-empty);
``model.backbone_kwargs`` go to ``create_model`` as they are (``drop_path_rate``, ``depth``, ...).

Weights: ``model.weights: PATH`` (safetensors or a torch state dict) goes through the model's own
``checkpoint_filter_fn`` (timm's key mapping: original checkpoints, position embeddings resampled
to the input size) with the classifier's keys dropped; ``model.pretrained: true`` finds the tag's
file in the Hugging Face cache (``da.models.hf_cache``) without network.
"""
from __future__ import annotations

import difflib
import sys
from functools import partial
from typing import Any, Optional

import torch
from torch import Tensor, nn

from da.errors import DAError
from da.models.backbone_entry import BackboneEntry, configured
from da.models.hf_cache import hub_weights
from da.models.param_blocks import ParamView, group_blocks
from da.models.pretrained import PretrainedCfg, load_weights, mismatch
from da.models.test_time_norm import has_batch_norm
from da.registry import BACKBONES

PREFIX = "timm"


class TimmFeatures(nn.Module):
    """A timm model without its classifier (``num_classes=0``): (N, C, H, W) -> (N, num_features);
    grey images are repeated to 3 channels. Its blocks are timm's coarse parameter groups."""

    def __init__(self, net: nn.Module, out_features: int) -> None:
        super().__init__()
        self.net = net
        self.out_features = out_features
        self._groups = group_blocks(net)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)

    def blocks(self) -> list[tuple[str, nn.Module]]:
        return [(name, ParamView(self.net, names)) for name, names in self._groups]

    def adapt_state(self, state: dict[str, Tensor], what: str) -> dict[str, Tensor]:
        """``state`` mapped as timm maps a checkpoint for this model, without the classifier's keys."""
        filter_fn = getattr(sys.modules[type(self.net).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:
            try:
                state = filter_fn(state, self.net)
            except Exception:  # another architecture's keys: say which, not the filter's KeyError
                own = set(self.net.state_dict())
                raise DAError(mismatch(what, sorted(own - set(state)), sorted(set(state) - own))) from None
        classifier = self.net.pretrained_cfg.get("classifier") or ()
        heads = (classifier,) if isinstance(classifier, str) else tuple(classifier)
        own = self.net.state_dict()
        return {k: v for k, v in state.items()
                if k in own or not any(k.startswith(f"{h}.") for h in heads)}


def _timm():
    import timm  # ~2 s to import: only runs naming a timm model pay it

    return timm


def _size_kwargs(timm: Any, arch: str, input_size: Optional[int]) -> dict[str, Any]:
    """``img_size`` when the model's constructor takes it (ViT, Swin, ...); convolutional networks take any size."""
    if input_size is None:
        return {}
    import inspect

    creator = timm.models.model_entrypoint(arch)
    module = sys.modules[creator.__module__]
    takes = "img_size" in inspect.signature(creator).parameters or any(
        "img_size" in inspect.signature(cls).parameters for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, nn.Module) and cls.__module__ == module.__name__)
    return {"img_size": input_size} if takes else {}


def _meta_model(timm: Any, name: str, kwargs: dict[str, Any]) -> nn.Module:
    try:
        with torch.device("meta"):
            return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DAError(f"model.backbone timm/{name}: timm.create_model rejects {kwargs or 'its defaults'} "
                      f"({text[:160]}); check model.input_size and model.backbone_kwargs") from None


def timm_entry(rest: str, input_size: Optional[int] = None, kwargs: Optional[dict[str, Any]] = None) -> BackboneEntry:
    """The entry of ``timm/<rest>`` (``rest``: a timm model name with an optional ``.tag``)."""
    timm = _timm()
    kwargs = dict(kwargs or {})
    arch, tag = timm.models.split_model_name_tag(rest)
    if not timm.is_model(arch):
        near = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"; closest: {', '.join(near)}" if near else "; timm.list_models() lists them"
        raise DAError(f"model.backbone: timm has no model {arch!r}{hint}")
    try:
        pretrained_cfg = timm.models.get_pretrained_cfg(rest)
    except RuntimeError:
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        raise DAError(f"model.backbone: timm model {arch} has no weights tagged {tag!r}; its tags: "
                      f"{', '.join(tags[:8]) or 'none'}") from None
    kwargs = {**_size_kwargs(timm, arch, input_size), **kwargs}
    net = _meta_model(timm, rest, kwargs)
    data = timm.data.resolve_model_data_config(net)
    side = input_size or data["input_size"][1]
    try:
        width = net.eval()(torch.empty(2, 3, side, side, device="meta")).shape[-1]
    except Exception as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DAError(f"model.input_size: timm model {arch} cannot take {side}x{side} images ({text[:120]}); "
                      f"give a size it can, e.g. {data['input_size'][1]}") from None
    cfg = PretrainedCfg((3, side, side), tuple(data["mean"]), tuple(data["std"]), "resize_crop_flip", "center_crop",
                        data["interpolation"], float(data["crop_pct"]))
    name = f"{PREFIX}/{rest}"
    return BackboneEntry(
        name, f"timm {arch} ({pretrained_cfg.tag or 'no weights'})", partial(build_timm, rest, kwargs,
                                                                             pretrained_cfg.hf_hub_id, name, int(width)),
        cfg, has_batch_norm([net]), tuple(n for n, _ in group_blocks(net)), int(width), "timm", pretrained_cfg.tag,
        configure=partial(configured, timm_entry, rest), text_encoder=False)



def build_timm(rest: str, kwargs: dict[str, Any], hub_id: Optional[str], backbone: str, width: int,
               pretrained: bool = False, in_channels: int = 3) -> TimmFeatures:
    """The timm model ``rest`` without classifier, with the tag's weights from the Hugging Face cache when ``pretrained``."""
    features = TimmFeatures(_timm().create_model(rest, pretrained=False, num_classes=0, **kwargs), width)
    if pretrained:
        if not hub_id:
            raise DAError(f"model.pretrained: {backbone} has no weights on the Hugging Face hub; set model.weights: PATH")
        load_weights(features, hub_weights(hub_id, backbone), key="model.pretrained")
    return features


BACKBONES.add_family(PREFIX, timm_entry)
