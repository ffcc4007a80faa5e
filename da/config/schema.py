"""The config schema: one dataclass per section of a run's YAML file (``data``, ``model``, ``adapter``,
``pretrain``, ``train`` and their nested sections), with each field's default and a comment on its
meaning. These are plain records; reading them from files lives in ``da.config.files``, type
checking in ``da.config.types`` and the cross-field and registry checks in ``da.composition.checks``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

#: Constructor arguments the loop fills in for adapters; a config may not set them.
LOOP_PROVIDED = ("feature_dim", "num_classes")


@dataclass
class AugmentConfig:
    """Random affine augmentation of training batches (da.data.augment); evaluation images are never augmented."""

    rotate: float = 0.0  # degrees: each image turns by a uniform draw in +-rotate
    scale: list[float] = field(default_factory=lambda: [1.0, 1.0])  # zoom range [low, high]; > 1 enlarges
    translate: float = 0.0  # shift in +-translate of the image side
    domains: list[str] = field(default_factory=lambda: ["source"])  # training batches to augment: source, target


@dataclass
class DataConfig:
    root: Optional[str] = None  # None: $DA_DATA_ROOT, else ./data
    #: a dataset name (mnist, usps, amazon, ...), a name with its options ({name: mnist_c, corruption: fog,
    #: severity: 3}: da.data.dataset_options) or an image folder / list:
    #: {folder, test_folder, list, test_list, root, classes, test_fraction} (da.data.image_domain);
    #: source may also list data sets: multi-source adaptation (da.data.multi_source); target may
    #: list several: a stream of domains for a test-time stage (da.data.stream)
    source: Union[str, dict, list[Union[str, dict]]] = "mnist"
    target: Union[str, dict, list[Union[str, dict]]] = "usps"
    source_val_size: int = 5000  # held out from source train for source validation
    split_seed: int = 0  # fixes the source validation split (and the draws below) independently of the run seed
    download: bool = True  # let torchvision download missing data (needs network)
    source_train_size: int = 0  # > 0: a seeded subsample of that many labelled source training images
    #: k > 0: k labelled target train images per class (seeded by split_seed); "all": every target train label
    target_labels_per_class: Union[int, str] = 0
    augment: Optional[AugmentConfig] = None  # e.g. {rotate: 10, scale: [0.9, 1.3], translate: 0.1}
    #: image folders and lists: per-image transforms {train: preset-or-list, test: preset-or-list}
    #: (presets: resize, resize_crop_flip, center_crop, resize_flip); unset: the backbone's defaults
    transforms: Optional[dict] = None
    cache: Union[bool, str] = False  # a folder for the decoded uint8 cache; true: <data root>/decoded_cache
    skip_bad_images: bool = False  # skip unreadable image files (counted in summary.json) instead of stopping
    num_workers: Optional[int] = None  # DataLoader workers for image files; None: 2 with CUDA, else 0
    #: The label-set setting (da.data.label_sets): closed, partial, open_set or universal; None: it
    #: follows from the classes each domain's spec lists ({name: usps, classes: [0, 1, 2]})
    setting: Optional[Literal["closed", "partial", "open_set", "universal"]] = None


@dataclass
class ModelConfig:
    #: a registered name (lenet, resnet50, ...), timm/<model>[.<tag>] (any timm model) or
    #: open_clip/<arch> (a CLIP image encoder); docs/backbones.md
    backbone: str = "lenet"
    #: ImageNet weights: torchvision's (downloaded into torch's cache), or a timm model's from the
    #: Hugging Face cache ($HF_HUB_CACHE) without network
    pretrained: bool = False
    #: a local state dict (.pth, .pt, .bin or .safetensors) to load into the backbone, offline
    weights: Optional[str] = None
    input_size: Optional[int] = None  # timm / open_clip: the side of the square input the model is built for
    backbone_kwargs: dict = field(default_factory=dict)  # timm.create_model's arguments, e.g. {drop_path_rate: 0.1}
    class_names: Optional[list[str]] = None  # head: zero_shot's prompts (default: the source data set's classes)
    bottleneck: Optional[int] = None  # width of a linear + batch-norm + ReLU layer after the backbone (TLlib: 256)
    head_dropout: float = 0.0  # dropout on the features the task head reads, in training (SAFN's, Xu et al. 2019)
    #: Open-set and universal settings: a prediction whose top softmax probability is below this is
    #: "unknown" (the confidence-threshold baseline); None: only an open-set method predicts unknown
    unknown_threshold: Optional[float] = None
    #: linear; weight_norm: a weight-normalised linear classifier (SHOT's digit classifier, Liang et al. 2020);
    #: zero_shot: an open_clip backbone's text embeddings of "a photo of a {class}." as the linear head's start
    head: Literal["linear", "weight_norm", "zero_shot"] = "linear"


@dataclass
class PretrainConfig:
    """Source-only training of extractor + head before adaptation."""

    steps: int = 0
    lr: float = 0.01
    batch_size: int = 64
    checkpoint: Optional[str] = None  # load from a run's checkpoint.pt instead of training
    load: Literal["all", "extractor"] = "all"  # extractor: keep only the checkpoint's extractor, train a new head
    #: Label smoothing of the source cross-entropy (Szegedy et al. 2016); SHOT trains its source
    #: model with 0.1 (Liang et al. 2020), which spreads its target predictions less over-confidently.
    label_smoothing: float = 0.0


@dataclass
class UnfreezeConfig:
    """Gradual unfreezing (ULMFiT): every block starts frozen; top block first, one more at each step listed."""

    every: Optional[int] = None  # one more block every N adaptation steps
    steps: Optional[list[int]] = None  # or: the adaptation steps after which each block unfreezes, top first


@dataclass
class EarlyStoppingConfig:
    """Stop when ``validator`` has not improved for ``patience`` evaluations; restore its best evaluation."""

    validator: str = "source_val"  # a validator the run scores (train.validators; da.validators): never target labels
    patience: int = 3


@dataclass
class TrainConfig:
    """The adaptation stage: extractor, head and adapter trained jointly."""

    steps: int = 8000
    batch_size: int = 64  # per domain: each step sees batch_size source + batch_size target images
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    #: The adaptation stage's optimizer: sgd (lr, momentum, nesterov, weight_decay) or adam (lr, betas,
    #: weight_decay as L2), e.g. ADDA's Adam(2e-4, betas 0.5 / 0.999). Pretraining stays SGD.
    optimizer: Literal["sgd", "adam"] = "sgd"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    #: inv: lr (1 + 10 p)^-0.75 over the run's progress p (Ganin 2016); inv_step: lr (1 + 0.001 i)^-0.75
    #: per iteration i, Transfer-Learning-Library's schedule; cosine; constant
    lr_schedule: Literal["constant", "inv", "inv_step", "cosine"] = "inv"
    extractor: Literal["finetune", "freeze"] = "finetune"
    extractor_lr_mult: float = 1.0  # learning-rate multiplier for the pretrained extractor
    adapter_lr_mult: float = 1.0  # learning-rate multiplier for the adapter's own parameters (a discriminator)
    batch_norm: Literal["shared", "per_domain"] = "shared"  # per_domain: DSBN (Chang 2019), da.models.domain_norm
    lr_mults: dict[str, float] = field(default_factory=dict)  # per extractor block, e.g. {conv1: 0.1}; 0 freezes it
    #: Layer-wise learning-rate decay (BEiT, Bao et al. 2022): the extractor's block i of n (bottom
    #: to top) trains at layer_decay^(n-1-i) of its rate, e.g. 0.65 for ViT-B; None: off
    layer_decay: Optional[float] = None
    unfreeze: Optional[UnfreezeConfig] = None  # gradual unfreezing of the extractor's blocks, top first
    #: With several sources: per_source applies the adapter to each source against the target (one
    #: adapter copy per source, as MDAN's discriminators); pooled applies one to the pooled sources.
    multi_source: Literal["per_source", "pooled"] = "per_source"
    source_weight: float = 1.0  # weight of the labelled-source cross-entropy (0: learn from target labels only)
    #: > 0: SDAT (Rangwani et al. 2022): the adapt stage's step is sharpness-aware for the task loss,
    #: a SAM ascent of this radius along its gradient, then the full loss there (da.train.sam); 0: off
    sam_rho: float = 0.0
    sam_adaptive: bool = False  # ASAM (Kwon et al. 2021): the radius scaled by each weight's magnitude
    early_stopping: Optional[EarlyStoppingConfig] = None
    #: The label-free validators scored at every evaluation (da.validators; docs/validators.md): a list
    #: of names, "default" (today every one) or "all"
    validators: Union[str, list[str]] = "default"
    fit_samples: int = 10000  # per domain, for closed-form adapters' fit
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"  # autocast of each step's forward (fp16: with a gradient
    # scaler; auto: bf16 where the device has it in hardware, else fp32)
    compile: bool = False  # torch.compile the extractor and head (in place; checkpoints unchanged)
    sync_batch_norm: bool = False  # torch.distributed: batch statistics over every rank's batch (SyncBatchNorm)
    eval_every: int = 1000
    log_every: int = 50
    checkpoint_every: int = 2000


@dataclass
class AdapterConfig:
    """One adapter (``name`` and constructor ``kwargs``), or a list of them (``parts``).

    For a list, ``name`` joins the parts' names (``cdan+mmd``) and ``kwargs`` is a flat record of
    the parts' settings and effective weights (``{"cdan/weight": 1.0, "mmd/weight": 0.1,
    "mmd/layer": "logits"}``, keyed as the composite's parts are) so that summaries list them; it
    is not passed to any constructor.
    """

    name: str = "source_only"
    kwargs: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0  # a list's multiplier for a part without its own weight argument; else 1
    parts: list[AdapterConfig] = field(default_factory=list)

    def blocks(self) -> list[str]:
        """The extractor blocks whose outputs the adapter reads (its ``blocks`` argument); [] for the top."""
        return [] if self.parts else list(self.kwargs.get("blocks") or [])


@dataclass
class StageConfig:
    """One stage of a run's ``stages`` list: a registered stage name and its constructor kwargs."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    name: Optional[str] = None  # run name; default: the config file's stem
    seed: int = 0
    device: str = "auto"  # auto: cuda when available, else cpu
    deterministic: bool = False  # torch's deterministic algorithms (CPU runs are reproducible without it)
    out_root: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    adapter: AdapterConfig = field(default_factory=AdapterConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: The run's stages in order (names, or {name: ..., setting: value}); None: pretrain (when it
    #: trains or loads), the closed-form fit (when the adapter needs one), adapt.
    stages: Optional[list[StageConfig]] = None
