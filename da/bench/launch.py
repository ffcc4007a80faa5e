"""Launchers: where a sweep's runs execute. ``local`` (in this process, or a pool of ``--jobs``
processes) or ``ray``.

With ``--jobs`` above 1 and with Ray, each run is ``python -m da.bench.worker`` in its own
process, and every launcher calls the same ``worker.execute``; Ray only decides where and when
(Moritz et al., "Ray", OSDI 2018). Pretraining runs go first: the adapter runs start from them.
A run may span several processes (``--nproc-per-run``: the worker under torchrun, one DDP run)
and, with Ray, several GPUs (``--gpus-per-run``: Ray reserves them and sets the run's
``CUDA_VISIBLE_DEVICES``; one rank per GPU).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from da.bench.plan import RunSpec
from da.bench.worker import execute
from da.errors import DAError, Interrupted

LAUNCHERS = ("local", "ray")


@dataclass
class Outcome:
    key: str
    status: str  # finished, resumed, skipped, failed, stopped (by a signal to da bench; resumes on a rerun)
    error: str = ""


@dataclass(frozen=True)
class PerRun:
    """What each run of a sweep gets: processes (torchrun ranks of one DDP run) and, with Ray, GPUs."""

    nproc: int = 1
    gpus: int = 0

    def check(self, launcher: str, jobs: int) -> None:
        if self.nproc < 1 or self.gpus < 0:
            raise DAError(f"--nproc-per-run must be at least 1 and --gpus-per-run at least 0, got {self.nproc} and {self.gpus}")
        if self.gpus and launcher != "ray":
            raise DAError("--gpus-per-run needs --launcher ray, which places each run on free GPUs; on one machine "
                          "use --jobs 1 --nproc-per-run N (the run's ranks take GPUs 0..N-1)")
        if self.gpus and self.nproc not in (1, self.gpus):
            raise DAError(f"--nproc-per-run {self.nproc} with --gpus-per-run {self.gpus}: a run has one rank per GPU; "
                          "drop --nproc-per-run")

    @property
    def ranks(self) -> int:
        return self.gpus or self.nproc


def worker_command(out: str, spec_json: str, ranks: int) -> list[str]:
    """The command of one run: the worker, under torchrun (``--standalone``: a free port) for several ranks."""
    worker = ["-m", "da.bench.worker", out, spec_json]
    if ranks == 1:
        return [sys.executable, *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks), *worker]


def worker_env(threads: int | None) -> dict[str, str]:
    """Environment for a run's process: absolute data root, and a thread budget when runs share cores."""
    env = dict(os.environ)
    if env.get("DA_DATA_ROOT"):
        env["DA_DATA_ROOT"] = str(Path(env["DA_DATA_ROOT"]).resolve())
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


class _Workers:
    """The worker processes of this launcher that are running now. A SIGTERM or SIGINT sent to
    ``da bench`` alone (a scheduler's kill, ``timeout``) is passed on to them, so that each saves
    a checkpoint and stops, rather than running on, orphaned, into a folder that a rerun resumes."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # re-entrant: a second signal may arrive inside stop()
        self.live: set[subprocess.Popen] = set()
        self.stopped = ""  # the signal's name once one arrived: start no further run

    def stop(self, signum: int, _frame: object = None) -> None:
        with self.lock:
            self.stopped = signal.Signals(signum).name
            for proc in self.live:
                proc.send_signal(signal.SIGTERM)


WORKERS = _Workers()


def run_process(spec_json: str, out: str, env: dict[str, str], cwd: str, ranks: int = 1) -> tuple[str, int, str]:
    """Run one spec in a fresh interpreter (``ranks`` of them under torchrun); (key, exit code, the
    run's error line or else the last line of its output)."""
    spec = RunSpec.from_json(spec_json)
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # inside a Ray task: the GPUs Ray gave this run
        env = {**env, "CUDA_VISIBLE_DEVICES": os.environ["CUDA_VISIBLE_DEVICES"]}
    if ranks > 1:
        env = {**env, "TORCH_CPP_LOG_LEVEL": env.get("TORCH_CPP_LOG_LEVEL", "ERROR")}
    with WORKERS.lock:
        if WORKERS.stopped:
            return spec.key, 2, f"not started: da bench received {WORKERS.stopped}"
        proc = subprocess.Popen(worker_command(out, spec_json, ranks), env=env,
                                cwd=cwd if os.path.isdir(cwd) else None, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        WORKERS.live.add(proc)
    try:
        stdout, stderr = proc.communicate()
    finally:
        with WORKERS.lock:
            WORKERS.live.discard(proc)
    lines = [line for line in (stderr if proc.returncode else stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("da: error")]  # under torchrun, its report comes after
    last = errors[0] if errors else lines[-1] if lines else f"exit code {proc.returncode}"
    return spec.key, proc.returncode, last


def waves(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """Pretraining runs, then the runs that start from them (and any others), each wave longest
    first: a long run started last would keep one core busy while the others sit idle."""
    first = [s for s in specs if s.adapter == "pretrain"]
    later = sorted((s for s in specs if s.adapter != "pretrain"), key=images_to_train, reverse=True)
    return [w for w in (first, later) if w]


def images_to_train(spec: RunSpec) -> int:
    """Images per domain that a run trains on, a proxy for its length (pretraining counted when
    the run does its own)."""
    stages = ("train",) if spec.after else ("train", "pretrain")
    return sum(spec.config[k]["steps"] * spec.config[k]["batch_size"] for k in stages)


def launch(specs: list[RunSpec], out: Path, launcher: str, jobs: int, address: str | None,
           report: Callable[[RunSpec, Outcome], None], per_run: PerRun = PerRun()) -> list[Outcome]:
    """Execute ``specs`` wave by wave; a run whose pretraining failed fails without starting."""
    if launcher not in LAUNCHERS:
        raise DAError(f"unknown launcher {launcher!r}; valid: {', '.join(LAUNCHERS)}")
    per_run.check(launcher, jobs)
    submit = _ray_pool(jobs, address, per_run) if launcher == "ray" else _local_pool(jobs, per_run)
    outcomes: dict[str, Outcome] = {}
    by_key = {s.key: s for s in specs}
    for wave in waves(specs):
        ready = []
        for spec in wave:
            if spec.after and outcomes.get(spec.after, Outcome(spec.after, "finished")).status == "failed":
                outcomes[spec.key] = Outcome(spec.key, "failed", f"its pretraining run {spec.after} failed")
                report(spec, outcomes[spec.key])
            else:
                ready.append(spec)
        try:
            for key, code, last in submit(ready, str(out.resolve())):
                status = last if code == 0 else "stopped" if WORKERS.stopped else "failed"
                outcomes[key] = Outcome(key, status, "" if code == 0 else last)
                report(by_key[key], outcomes[key])
        except Interrupted as exc:
            raise Interrupted(f"{exc}; or rerun the same da bench command to continue the whole sweep") from None
    return [outcomes[s.key] for s in specs]


Submit = Callable[[list[RunSpec], str], Iterable[tuple[str, int, str]]]


def _in_process(specs: list[RunSpec], out: str) -> Iterable[tuple[str, int, str]]:
    """One run after another in this process (``--jobs 1``): no interpreter start-up per run."""
    for spec in specs:
        try:
            yield spec.key, 0, execute(spec, Path(out))
        except Interrupted:
            raise
        except DAError as exc:
            yield spec.key, 2, str(exc)
        except Exception as exc:  # one run's bug must not lose the rest of the sweep
            yield spec.key, 1, f"{type(exc).__name__}: {exc}"


def _local_pool(jobs: int, per_run: PerRun = PerRun()) -> Submit:
    if jobs == 1 and per_run.ranks == 1:
        return _in_process
    threads = max(1, (os.cpu_count() or 1) // (jobs * per_run.ranks))

    def submit(specs: list[RunSpec], out: str) -> Iterable[tuple[str, int, str]]:
        env, cwd = worker_env(threads), os.getcwd()
        WORKERS.stopped = ""
        in_main = threading.current_thread() is threading.main_thread()  # where signals can be caught
        previous = {s: signal.signal(s, WORKERS.stop) for s in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
        try:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = [pool.submit(run_process, s.to_json(), out, env, cwd, per_run.ranks) for s in specs]
                for future in as_completed(futures):
                    yield future.result()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if WORKERS.stopped:
            raise Interrupted(f"da bench stopped on {WORKERS.stopped} once the runs under way saved a checkpoint; "
                              "each can continue alone with da train --resume <its run folder>")

    return submit


def start_ray(num_cpus: int, address: str | None) -> Any:
    """Ray, started here with ``num_cpus`` CPUs, or joined at ``address``; the ``ray`` module."""
    try:
        import ray  # imported here: an optional dependency (the ray extra), and heavy to start
    except ImportError:
        raise DAError("--launcher ray needs Ray: pip install 'da[ray]'") from None
    if not ray.is_initialized():
        # No address: a local Ray with num_cpus CPUs (or an existing cluster named by RAY_ADDRESS).
        options = {"address": address} if address else {"num_cpus": num_cpus}
        # Ray starts its workers at niceness 15, and each run's process inherits it: beside any other
        # busy process a run then crawls (15 times slower beside two). A Ray started here runs them
        # as --launcher local does, unless RAY_worker_niceness says otherwise.
        os.environ.setdefault("RAY_worker_niceness", "0")
        try:
            ray.init(**options, include_dashboard=False, log_to_driver=False, configure_logging=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise DAError(f"cannot start or reach Ray at {address or 'a local instance'}: {str(exc).splitlines()[0]}") from None
    return ray


def _ray_pool(jobs: int, address: str | None, per_run: PerRun = PerRun()) -> Submit:
    ray = start_ray(jobs, address)
    gpus = ray.cluster_resources().get("GPU", 0)
    if per_run.gpus > gpus:
        raise DAError(f"--gpus-per-run {per_run.gpus}, but the Ray cluster at {address or 'this machine'} has {gpus:g} "
                      "GPUs: no run could start; lower --gpus-per-run or join machines with GPUs")
    # A run's ranks each take a CPU; with GPUs, Ray sets CUDA_VISIBLE_DEVICES in the task (run_process passes it on).
    remote = ray.remote(num_cpus=per_run.ranks, num_gpus=per_run.gpus)(run_process)

    def submit(specs: list[RunSpec], out: str) -> Iterable[tuple[str, int, str]]:
        env, cwd = worker_env(1), os.getcwd()
        pending = [remote.remote(s.to_json(), out, env, cwd, per_run.ranks) for s in specs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    return submit
