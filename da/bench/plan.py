"""A benchmark file -> the list of runs it stands for (adapter x direction x seed), and their order.

A benchmark file names adapter configs and the seeds and directions to run them over::

    seeds: [0, 1, 2]
    directions: [mnist->usps]            # or usps->mnist, or both
    adapters: {dann: ../mnist_usps/dann.yaml, dann_w3: {config: ../mnist_usps/dann.yaml, set: {adapter.weight: 3}}}
    #   an entry with a grid stands for one setting per combination of values: mmd@weight=0.3, ...
    #   mmd: {config: ../mnist_usps/mmd.yaml, grid: {adapter.weight: [0.3, 1, 3]}}
    set: {train.eval_every: 500}          # overrides for every run
    direction_set: {usps->mnist: {data.source_val_size: 1000}}

Runs whose configs agree on data, model, pretraining and seed share one pretraining run: the
adapters of a seed then start from the same source model, and the sweep pays for it once.
``target_only`` is the upper bound: the direction's target is its (labelled) source.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from da.composition import build_config
from da.composition.label_shift import head_extra
from da.config import Config, read_yaml, set_value, to_dict
from da.errors import DAError

#: The adapter name whose runs train on the target's labels: an upper bound, not an adapter.
TARGET_ONLY = "target_only"


@dataclass
class BenchConfig:
    name: str
    adapters: dict[str, dict[str, Any]]  # label -> {config: resolved file, set: overrides, family: entry label}
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    directions: list[str] = field(default_factory=lambda: ["mnist->usps"])
    set: dict[str, Any] = field(default_factory=dict)
    direction_set: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: True: runs agreeing on data, model, pretraining and seed share one pretraining run; "source":
    #: also across targets (a test-time benchmark's many streams from one source model; the
    #: targets must have the source's channels); False: none shared.
    share_pretraining: bool | str = True
    #: Names a direction may use for a data spec or a list of them (a stream of domains):
    #: ``{gaussian_noise-5: {name: mnist_c, corruption: gaussian_noise, severity: 5}}``.
    domains: dict[str, Any] = field(default_factory=dict)
    tsne: dict[str, Any] = field(default_factory=dict)  # {adapter: ..., seed: ...}
    out_root: str = "runs/bench"


@dataclass
class RunSpec:
    """One run of the sweep: where it goes, its full config, and the run it waits for."""

    key: str  # e.g. mnist-usps/dann/seed0, also its folder under the output
    adapter: str
    direction: str
    seed: int
    config: dict[str, Any]
    after: str | None = None  # key of the pretraining run this one starts from

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @staticmethod
    def from_json(text: str) -> "RunSpec":
        return RunSpec(**json.loads(text))


def parse_direction(direction: str) -> tuple[str, str]:
    source, sep, target = direction.partition("->")
    if not sep or not source.strip() or not target.strip():
        hint = (" (a shell reads an unquoted '>' as a redirection: quote it, --directions 'usps->mnist')"
                if direction.rstrip().endswith("-") else "")
        raise DAError(f"direction {direction!r} must look like source->target, e.g. mnist->usps{hint}")
    return source.strip(), target.strip()


def sources(source: str) -> str | list[str]:
    """A direction's source: one dataset, or several joined by ``+`` (multi-source: a list)."""
    return [s.strip() for s in source.split("+")] if "+" in source else source


def direction_folder(direction: str) -> str:
    return "-".join(parse_direction(direction))


def parse_grid_flags(flags: list[str]) -> dict[str, list[Any]]:
    """``--grid adapter.weight=0.3,1,3`` (repeatable) -> ``{"adapter.weight": [0.3, 1, 3]}``; values are YAML."""
    grid: dict[str, list[Any]] = {}
    for flag in flags:
        key, sep, values = flag.partition("=")
        try:
            parsed = yaml.safe_load(f"[{values}]") if sep and key.strip() and values.strip() else None
        except yaml.YAMLError:
            parsed = None
        if not isinstance(parsed, list) or not parsed:
            raise DAError(f"--grid must look like KEY=V1,V2,..., e.g. --grid adapter.weight=0.3,1,3; got {flag!r}")
        grid[key.strip()] = parsed
    return grid


def load_bench_config(path: Path, grid: dict[str, list[Any]] | None = None,
                      grid_adapters: list[str] | None = None) -> BenchConfig:
    """The benchmark file at ``path``; ``grid`` (from ``--grid``) is added to the grid of every
    adapter entry, or of those named in ``grid_adapters``."""
    raw = read_yaml(path)
    names = [f.name for f in dataclasses.fields(BenchConfig)]
    for key in raw:
        if key not in names:
            near = difflib.get_close_matches(str(key), names, n=1)
            hint = f"did you mean {near[0]}?" if near else f"valid keys: {', '.join(names)}"
            raise DAError(f"benchmark {path}: unknown key {key!r}; {hint}")
    adapters = raw.get("adapters")
    if not isinstance(adapters, dict) or not adapters:
        raise DAError(f"benchmark {path}: adapters must map adapter names to config files, e.g. adapters: {{dann: dann.yaml}}")
    if grid and grid_adapters is not None and set(grid_adapters) - set(map(str, adapters)):
        others = ", ".join(sorted(set(grid_adapters) - set(map(str, adapters))))
        raise DAError(f"--grid sweeps the benchmark's entries, and {others} is not one; with --grid, --adapters "
                      f"takes entries of {path.name}: {', '.join(sorted(map(str, adapters)))}")
    resolved = {}
    for label, entry in adapters.items():
        if isinstance(entry, str):
            entry = {"config": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), str) \
                or not isinstance(entry.get("set", {}), dict) or set(entry) - {"config", "set", "grid", "directions"} \
                or not isinstance(entry.get("directions", []), list):
            raise DAError(f"benchmark {path}: adapters.{label} must be a config file path, or "
                          f"{{config: <path>, set: {{key: value}}, grid: {{key: [values]}}, directions: [a->b]}}; got {entry!r}")
        base = {"config": str((path.parent / entry["config"]).resolve()), "set": entry.get("set", {})}
        if "directions" in entry:  # this entry runs on these of the benchmark's directions only
            base["directions"] = [str(d) for d in entry["directions"]]
        points = entry.get("grid")
        if grid and (grid_adapters is None or str(label) in grid_adapters):  # the flag wins over the file
            points = {**(points if isinstance(points, dict) else {}), **grid}
            base["set"] = {k: v for k, v in base["set"].items() if k not in grid}
        for name, setting in expand_grid(str(label), base, points, f"benchmark {path}").items():
            if name in resolved:
                raise DAError(f"benchmark {path}: two adapters are labelled {name!r}; rename one")
            resolved[name] = setting
    raw["adapters"] = resolved
    raw.setdefault("name", path.stem)
    for key, kind in (("seeds", list), ("directions", list), ("set", dict), ("direction_set", dict), ("tsne", dict),
                      ("domains", dict)):
        if key in raw and not isinstance(raw[key], kind):
            raise DAError(f"benchmark {path}: {key} must be a {kind.__name__}, got {raw[key]!r}")
    if raw.get("share_pretraining", True) not in (True, False, "source"):
        raise DAError(f"benchmark {path}: share_pretraining must be true, false or source, got {raw['share_pretraining']!r}")
    config = BenchConfig(**raw)
    for seed in config.seeds:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DAError(f"benchmark {path}: seeds must be integers, got {seed!r}")
    for direction in [*config.directions, *config.direction_set]:
        parse_direction(direction)
    for label, entry in config.adapters.items():
        for direction in entry.get("directions", []):
            if direction not in config.directions:
                raise DAError(f"benchmark {path}: adapters.{label}.directions lists {direction!r}, which is not in "
                              f"directions; list it there too")
    return config


def expand_grid(label: str, entry: dict[str, Any], grid: Any, where: str) -> dict[str, dict[str, Any]]:
    """One adapter entry, or one per point of its ``grid`` (every combination of the listed values).

    A point's label is the entry's followed by its values, ``mmd@weight=0.3+layer=both``, each key
    shortened to its last part where that is unambiguous. Every setting keeps ``family``: the entry's
    label, which ``--adapters`` accepts for the whole grid and results.md compares settings within.
    """
    if grid is None:
        return {label: {**entry, "family": label}}
    example = "e.g. grid: {adapter.weight: [0.3, 1, 3]}"
    if not isinstance(grid, dict) or not grid:
        raise DAError(f"{where}: adapters.{label}.grid must map config keys to lists of values, {example}; got {grid!r}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise DAError(f"{where}: adapters.{label}.grid.{key} must be a non-empty list of values, {example}; got {values!r}")
        if key in entry["set"]:
            raise DAError(f"{where}: adapters.{label} sets {key} in both set and grid; keep it in one of them")
    keys = list(grid)
    tails = [str(k).rsplit(".", 1)[-1] for k in keys]
    names = [tail if tails.count(tail) == 1 else str(key) for key, tail in zip(keys, tails)]
    out: dict[str, dict[str, Any]] = {}
    for values in itertools.product(*grid.values()):
        name = label + "@" + "+".join(f"{n}={_label_value(v)}" for n, v in zip(names, values))
        if name in out:
            raise DAError(f"{where}: adapters.{label}.grid gives two settings the label {name!r}; list each value once")
        out[name] = {**entry, "set": {**entry["set"], **dict(zip(keys, values))}, "family": label}
    return out


def _label_value(value: Any) -> str:
    """A grid value as it appears in a label (and so in a folder name): no spaces, commas or slashes."""
    if isinstance(value, bool) or value is None:
        text = json.dumps(value)
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, (list, tuple)):
        text = "-".join(_label_value(v) for v in value)
    elif isinstance(value, dict):
        text = "-".join(f"{k}={_label_value(v)}" for k, v in value.items())
    else:
        text = str(value)
    return "".join("-" if c in " ,/\\" else c for c in text)


def families(config: BenchConfig) -> dict[str, list[str]]:
    """Each adapter entry of the benchmark file -> its labels (one, or one per point of its grid)."""
    out: dict[str, list[str]] = {}
    for label, entry in config.adapters.items():
        out.setdefault(entry.get("family", label), []).append(label)
    return out


def narrow(config: BenchConfig, seeds: str | None, adapters: str | None, directions: str | None) -> BenchConfig:
    """The benchmark restricted by ``--seeds 0,1``, ``--adapters a,b`` and ``--directions x->y``."""
    out = dataclasses.replace(config)
    if seeds:
        try:
            out.seeds = [int(s) for s in seeds.split(",")]
        except ValueError:
            raise DAError(f"--seeds must be comma-separated integers, e.g. --seeds 0,1; got {seeds!r}") from None
    if adapters:
        wanted = [a.strip() for a in adapters.split(",") if a.strip()]
        grids = families(config)
        unknown = [a for a in wanted if a not in config.adapters and a not in grids]
        if unknown:
            names = sorted({*config.adapters, *grids})
            raise DAError(f"--adapters: {', '.join(unknown)} not in this benchmark; it has: {', '.join(names)}")
        labels = [label for a in wanted for label in ([a] if a in config.adapters else grids[a])]
        out.adapters = {a: config.adapters[a] for a in dict.fromkeys(labels)}
    if directions:
        out.directions = [d.strip() for d in directions.split(",") if d.strip()]
        for direction in out.directions:
            parse_direction(direction)
    return out


def widen(whole: BenchConfig, narrowed: BenchConfig) -> BenchConfig:
    """The whole benchmark plus the seeds and directions that flags added to it (``--directions
    usps->mnist`` on a file that lists only mnist->usps): reports then cover those runs too."""
    added = lambda have, more: [*have, *(x for x in more if x not in have)]
    return dataclasses.replace(whole, seeds=added(whole.seeds, narrowed.seeds),
                               directions=added(whole.directions, narrowed.directions))


def runs_on(bench: BenchConfig, adapter: str, direction: str) -> bool:
    """False when the adapter's entry lists the directions it runs on and this is not one of them."""
    wanted = bench.adapters[adapter].get("directions")
    return wanted is None or direction in wanted


def run_config(bench: BenchConfig, adapter: str, direction: str, seed: int) -> dict[str, Any]:
    """The validated config of one run, as plain data (what its config.yaml will hold)."""
    source, target = parse_direction(direction)
    entry = bench.adapters[adapter]
    source, target = bench.domains.get(source, source), bench.domains.get(target, target)
    overrides = {**bench.set, **entry["set"], **bench.direction_set.get(direction, {}),
                 "data.source": target if adapter == TARGET_ONLY else sources(source), "data.target": target,
                 "seed": seed, "name": f"{adapter}-{direction_folder(direction)}-seed{seed}"}
    raw = read_yaml(Path(entry["config"]))
    for key, value in overrides.items():
        raw = set_value(raw, str(key), value, f"benchmark override {key}")
    try:
        return to_dict(build_config(raw))
    except DAError as exc:
        raise DAError(f"benchmark adapter {adapter} ({direction}, seed {seed}): {exc}") from None


def pretrain_key(config: dict[str, Any], across_targets: bool = False) -> str:
    """Runs with the same key can share one pretraining run (``across_targets``: whatever their target).

    Only values that differ from the defaults count, so a key added to the config later (at its
    default) leaves the keys, and the pretraining folders named after them, as they were.
    """
    defaults = to_dict(Config())
    shared = {k: _changed(config[k], defaults[k]) for k in ("seed", "device", "data", "model", "pretrain")}
    shared["model"].pop("unknown_threshold", None)  # read at evaluation only: the source model is the same
    extra = head_extra(build_config(config))
    if extra:  # OSBP's head has an unknown column: its source model is trained with it
        shared["head_extra"] = extra
    if across_targets:
        shared["data"] = {k: v for k, v in shared["data"].items() if k != "target"}
    return hashlib.sha1(json.dumps(shared, sort_keys=True).encode()).hexdigest()[:8]


def _changed(value: Any, default: Any) -> Any:
    if isinstance(value, dict) and isinstance(default, dict):
        return {k: _changed(v, default.get(k)) for k, v in value.items() if v != default.get(k)}
    return value


def plan_runs(bench: BenchConfig, within: BenchConfig | None = None) -> list[RunSpec]:
    """Every run of the benchmark, pretraining runs first.

    ``within`` is the whole benchmark when ``bench`` narrows it: which runs share a pretraining
    run is decided on the whole, so a run is the same whether it is run alone or with the rest.
    """
    if within is not None:
        wanted = {(d, a, s) for d in bench.directions for a in bench.adapters for s in bench.seeds}
        whole = dataclasses.replace(within, directions=list(dict.fromkeys([*within.directions, *bench.directions])))
        runs = [r for r in plan_runs(whole) if r.adapter != "pretrain" and (r.direction, r.adapter, r.seed) in wanted]
        needed = {r.after for r in runs}
        return [r for r in plan_runs(whole) if r.key in needed] + runs
    runs = [RunSpec(f"{direction_folder(d)}/{a}/seed{s}", a, d, s, run_config(bench, a, d, s))
            for d in bench.directions for a in bench.adapters for s in bench.seeds if runs_on(bench, a, d)]
    if not bench.share_pretraining:
        return runs
    groups: dict[str, list[RunSpec]] = {}
    for run in runs:
        pre = run.config["pretrain"]
        if pre["steps"] > 0 and not pre["checkpoint"]:
            groups.setdefault(pretrain_key(run.config, bench.share_pretraining == "source"), []).append(run)
    pretraining = []
    for key, members in groups.items():
        if len(members) < 2:
            continue
        first = members[0]
        config = json.loads(json.dumps(first.config))
        config.update(name=f"pretrain-{direction_folder(first.direction)}-seed{first.seed}",
                      adapter={"name": "source_only"}, stages=None)  # the default list: pretraining alone
        config["train"]["steps"] = 0
        if isinstance(config["data"]["target"], list):  # a stream of domains: pretraining reports on its first
            config["data"]["target"] = config["data"]["target"][0]
        spec = RunSpec(f"{direction_folder(first.direction)}/pretrain/seed{first.seed}-{key}", "pretrain",
                       first.direction, first.seed, config)
        pretraining.append(spec)
        for run in members:
            run.after = spec.key
            run.config["pretrain"]["checkpoint"] = f"{{out}}/{spec.key}/checkpoint.pt"
    return pretraining + runs
