"""Test-time adaptation: a source model that adapts while it predicts, on a stream of target batches.

The protocol of the field's benchmarks (TTAB, Zhao et al., ICML 2023; the test-time adaptation
benchmark of Marsden, Döbler and Yang, WACV 2024, mariodoebler/test-time-adaptation): the target *test* split arrives batch by batch
(``da.data.stream``, each image once); for each batch the model predicts, the prediction is
scored (online accuracy), and only then does the method update on that batch. No source image and
no target label reaches the method; the labels only score the predictions already made.

A method is a stage extending ``TestTimeStage``: its ``adapt(ctx, x)`` returns the batch's logits,
as a plain function (``norm``, ``lame``: no gradient) or as a generator that yields ``Update``s for
the loop to apply and returns the logits it predicted before them (``tent``, ``eata``, ...). Its
settings are the stream's (below) and its own, with its paper's defaults.

Stream settings: ``batch_size``; ``order`` (``shuffled``, ``class_correlated`` with Dirichlet
concentration ``alpha`` over ``slots`` slots, ``sequential``); ``sequence`` over the domains of
``data.target`` (``continual``, ``gradual``, ``mixed``); ``rounds`` (the sequence walked again);
``reset``: ``never``, ``episodic`` (every batch starts from the source model, Wang et al. 2021's
episodic TENT) or ``domain`` (at each new domain). The model runs in eval mode (dropout off);
batch-norm layers normalise with the test batch's statistics (``da.models.test_time_norm``) when
the method says so (``test_statistics``).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Literal

from torch import Tensor

from da.data.stream import StreamPlan, StreamSampler, stream_plan
from da.errors import DAError
from da.models.test_time_norm import Affine, copy_state, use_test_statistics
from da.models.backbone_entry import backbone_entry
from da.run_files import write_json
from da.stages.base import OptimSettings, ParamGroup, Stage, Update
from da.train.run import Run, StageContext

#: Added to the run's seed for the stream's order.
SEED_OFFSET = 4099


@dataclass(eq=False)
class TestTimeStage(Stage):
    """Base of the test-time stages: the stream, online scoring, resets."""

    batch_size: int = 64
    order: Literal["shuffled", "class_correlated", "sequential"] = "shuffled"
    alpha: float = 0.1
    slots: int = 0  # class_correlated: Dirichlet slots (0: one per class, as RoTTA)
    sequence: Literal["continual", "gradual", "mixed"] = "continual"
    rounds: int = 1
    reset: Literal["never", "episodic", "domain"] = "never"

    label: ClassVar[str] = "test-time adaptation"
    needs_source_model: ClassVar[bool] = True
    test_time: ClassVar[bool] = True
    logs_lr: ClassVar[bool] = False
    checkpoint_at_start: ClassVar[bool] = True
    shown: ClassVar[dict[str, str]] = {"online_acc": "online/acc"}
    #: Batch-norm layers normalise with the test batch's statistics (mixed with the source's by ``prior``).
    test_statistics: ClassVar[bool] = True
    #: The method resets to the source model itself (SAR's recovery): the stream's start is kept
    #: for ``restore`` whatever ``reset`` says.
    keeps_source: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.rounds < 1 or self.alpha <= 0 or self.slots < 0:
            raise DAError(f"stage {self.name}: batch_size and rounds must be >= 1, alpha > 0 and slots >= 0; got "
                          f"batch_size={self.batch_size}, rounds={self.rounds}, alpha={self.alpha}, slots={self.slots}")
        if self.reset == "domain" and self.sequence == "mixed":
            raise DAError(f"stage {self.name}: reset: domain needs domains one after another, and sequence: mixed "
                          f"interleaves them; use reset: never or episodic, or sequence: continual")
        self._plan: tuple[int, StreamPlan] | None = None
        self.source: dict[str, Any] | None = None  # the model and optimizers at the stream's start (resets)
        self.last_batch = 0

    def statistics_prior(self) -> float:
        """Source statistics as a prior worth this many images (``norm``'s setting; 0: the batch's alone)."""
        return 0.0

    # -- the stream ---------------------------------------------------------------------------------

    def plan(self, domains: Any, seed: int) -> StreamPlan:
        if self._plan is None or self._plan[0] != seed:
            split = domains.target_test
            self._plan = (seed, stream_plan(split.y, domains.target_parts(), len(domains.target_names), self.batch_size,
                                            self.order, self.alpha, self.sequence, seed + SEED_OFFSET, self.rounds,
                                            self.slots or None))
        return self._plan[1]

    def steps(self, run: "Run") -> int:
        return self.plan(run.domains, run.config.seed).batches

    def samplers(self, run: "Run") -> dict[str, Any]:
        return {"stream": StreamSampler(run.domains.target_test, self.plan(run.domains, run.config.seed))}

    def images_per_step(self, run: "Run") -> int:
        return self.last_batch

    def eval_every(self, run: "Run") -> int:
        return 0  # the adapted model is evaluated once, after the stream

    # -- checks -------------------------------------------------------------------------------------

    def check(self, config: Any) -> None:
        if self.batch_size > 1 or not self.test_statistics or self.statistics_prior() > 0:
            return
        if backbone_entry(config.model).batch_norm or config.model.bottleneck:
            raise DAError(f"stage {self.name} normalises with the test batch's statistics, which a batch of 1 cannot "
                          f"give the batch-norm layers of backbone {config.model.backbone}; use batch_size >= 2, a "
                          f"group-norm backbone (model.backbone: lenet_gn), or stage norm with prior > 0")

    def check_data(self, config: Any, domains: Any) -> None:
        if self.plan(domains, config.seed).batches == 0:
            raise DAError(f"stage {self.name}: the stream over data.target {config.data.target} has no batch (its test "
                          f"split is empty); give a target with test images")

    # -- running ------------------------------------------------------------------------------------

    def settings(self, run: "Run") -> OptimSettings:
        return OptimSettings(0.0, 0.0, 0.0, False, "constant")

    def fill_slots(self, run: "Run", fresh: bool) -> None:
        if self.test_statistics:
            for part in run.model.modules():
                use_test_statistics(part, self.statistics_prior())

    def begin(self, ctx: "StageContext") -> None:
        run = ctx.run
        self._prepare(ctx)
        run.online.start(list(run.domains.target_names), self.rounds)
        if self.reset != "never" or self.keeps_source:
            self.source = {"model": {name: copy_state(part) for name, part in run.model.parts().items()},
                           "optimizers": {k: opt.state_dict() for k, opt in ctx.optimizers.items()},
                           "method": self.method_state()}
        if run.dist.main:
            self.write_stream(run)

    def resumed(self, ctx: "StageContext") -> None:
        self._prepare(ctx)

    def _prepare(self, ctx: "StageContext") -> None:
        if ctx.run.dist.on:
            raise DAError(f"stage {self.name} adapts on one stream in one process; run it without torchrun")
        for part in ctx.run.model.modules():
            part.eval()  # dropout off; batch statistics come from the test-time batch-norm layers
        self.start(ctx)

    def write_stream(self, run: "Run") -> None:
        """``stream.json``: the stream's settings and order, image by image (indices into the target test split)."""
        plan = self.plan(run.domains, run.config.seed)
        write_json(run.run_dir / "stream.json", {
            "stage": self.name, "seed": run.config.seed + SEED_OFFSET, "batch_size": self.batch_size,
            "order": self.order, "alpha": self.alpha, "slots": self.slots, "sequence": self.sequence,
            "rounds": self.rounds, "reset": self.reset, "domains": list(run.domains.target_names),
            "batches": plan.batches, "batch_starts": plan.starts, "index": plan.index.tolist(),
            "domain": plan.domain.tolist()})

    def restore(self, ctx: "StageContext") -> None:
        """The model, the optimizers and the method's own state as they were when the stream began."""
        assert self.source is not None
        run = ctx.run
        for name, part in run.model.parts().items():
            part.load_state_dict(self.source["model"][name])
        for key, opt in ctx.optimizers.items():
            opt.load_state_dict(self.source["optimizers"][key])
        self.load_method_state(self.source["method"])

    def step(self, ctx: "StageContext", step: int, batch: dict[str, tuple[Tensor, Tensor]], log: bool) -> Iterator[Update]:
        x, y = batch["stream"]
        sampler: StreamSampler = ctx.samplers["stream"]  # type: ignore[assignment]
        if self.reset == "episodic" or (self.reset == "domain" and sampler.new_block and step > 1):
            self.restore(ctx)
        result = self.adapt(ctx, x)
        logits = (yield from result) if inspect.isgenerator(result) else result
        hits = logits.detach().argmax(1) == y.to(logits.device)
        online = ctx.run.online
        for d in sampler.domain.unique().tolist():
            mine = sampler.domain.to(hits.device) == d
            online.add(d, sampler.round, int(hits[mine].sum()), int(mine.sum()))
        self.last_batch = len(y)
        if log:
            yield Update(None, scalars={"online/acc": online.accuracy, "online/batch_acc": hits.float().mean(),
                                        **self.scalars()})

    # -- what a method defines ----------------------------------------------------------------------

    def start(self, ctx: "StageContext") -> None:
        """Once per session before the stream's first batch (after the state of a resume loaded)."""

    def adapt(self, ctx: "StageContext", x: Tensor) -> Any:
        """The batch's logits, predicted before any update on it: a tensor, or a generator yielding
        ``Update``s and returning them."""
        raise NotImplementedError

    def forward(self, run: "Run", x: Tensor) -> Tensor:
        """The model's logits for target images."""
        return run.model.head(run.model.embed(x, "target"))

    def norm_affine(self, run: "Run") -> list[ParamGroup]:
        """One parameter group: the affine parameters of the model's normalisation layers, the only
        parameters left trainable (TENT's choice; Wang et al. 2021)."""
        parts = list(run.model.modules())
        for part in parts:
            part.requires_grad_(False)
        affine = Affine(parts)
        affine.requires_grad_(True)
        return [ParamGroup("norm", affine)]

    def scalars(self) -> dict[str, Any]:
        """The method's own TensorBoard scalars of the last batch (logging steps)."""
        return {}

    def method_state(self) -> dict[str, Any]:
        """The method's own state beyond the model and optimizers (an EMA teacher, a moving average)."""
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {"source": self.source, "method": self.method_state(), "last_batch": self.last_batch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source, self.last_batch = state["source"], state["last_batch"]
        self.load_method_state(state["method"])


@dataclass(eq=False)
class GradientTestTimeStage(TestTimeStage):
    """A test-time method that trains by gradient: its optimizer settings (a constant learning rate)."""

    lr: float = 1e-3
    optimizer: Literal["sgd", "adam"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0

    def settings(self, run: "Run") -> OptimSettings:
        return OptimSettings(self.lr, self.momentum, self.weight_decay, False, "constant", self.optimizer)
