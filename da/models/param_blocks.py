"""A network's parameter groups as blocks: the units fine-tuning freezes, unfreezes and gives rates.

timm (Wightman 2019) names each model's groups with a ``group_matcher``: the stem, then ViT's
``blocks.N`` or a ConvNeXt's / Swin's stages, bottom to top (the groups its ``param_groups_layer_decay``
scales, after BEiT's layer decay, Bao et al. 2022). ``group_blocks`` names them; ``ParamView`` holds
one group's modules and loose parameters (the class token, the position embedding) as one module,
sharing them with the network, so ``da.finetune`` can freeze it, switch its mode and give its
parameters to an optimizer as it does a ResNet's ``layer1``.
"""
from __future__ import annotations

from torch import Tensor, nn


class ParamView(nn.Module):
    """Some of ``net``'s parameters, as the largest whole submodules that hold only them, plus the
    parameters that no such submodule holds (shared, not copied)."""

    def __init__(self, net: nn.Module, names: list[str]) -> None:
        super().__init__()
        wanted = set(names)
        held = {prefix: {f"{prefix}.{n}" for n, _ in m.named_parameters()} for prefix, m in net.named_modules() if prefix}
        chosen: dict[str, nn.Module] = {}
        loose = []
        for name in names:
            parts = name.split(".")
            for k in range(1, len(parts)):
                prefix = ".".join(parts[:k])
                if held.get(prefix) and held[prefix] <= wanted:
                    chosen.setdefault(prefix, net.get_submodule(prefix))
                    break
            else:
                loose.append(net.get_parameter(name))
        self.parts = nn.ModuleList(chosen.values())
        self.loose = nn.ParameterList(loose)

    def forward(self, *args: Tensor) -> Tensor:
        raise TypeError("a ParamView groups a block's parameters for fine-tuning; it has no forward")


def block_name(first: str, index: int) -> str:
    """A group's name from its first parameter's: the components up to the first that ends in a digit
    (``blocks.3``, ``stages.1``, ``layer2``); the bottom group is ``stem``."""
    if index == 0:
        return "stem"
    out = []
    for part in first.split("."):
        out.append(part)
        if part[-1:].isdigit():
            break
    else:
        out = out[:1]
    return ".".join(out)


def group_blocks(net: nn.Module) -> list[tuple[str, list[str]]]:
    """``(name, parameter names)`` per timm group of ``net`` (coarse: ViT blocks, CNN stages), bottom to top."""
    from timm.models import group_parameters  # timm is imported only by runs that use a timm model

    groups = group_parameters(net, net.group_matcher(coarse=True))
    named: list[tuple[str, list[str]]] = []
    for i, (_, names) in enumerate(sorted(groups.items())):
        name = block_name(names[0], i)
        if any(name == n for n, _ in named):
            name = f"{name}_{i}"
        named.append((name, list(names)))
    return named
