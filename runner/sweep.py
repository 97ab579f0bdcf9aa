"""``attn-market sweep SWEEP.yaml``: a grid of experiments on Ray Tune, one table.

A sweep file names a base config, the overrides of each trial and the job every
trial runs::

    base: ../first_price.yaml          # relative to the sweep file
    job: simulate                      # simulate | train+evaluate | solve
    grid:                              # cartesian product over dotted config keys
      env.mechanism: [first_price, second_price]
      seed: [0, 1, 2, 3, 4]
    list:                              # and/or explicit trials (each x the grid)
      - {env.n_buyers: 2}
      - {env.n_buyers: 5, env.mechanism_params.reserve: 0.1}
    set: {episodes: 2000}              # applied to every trial
    metrics: [efficiency, revenue]     # the table's columns (default: per job)
    concurrency: 0                     # trials at once; 0: the cluster's CPUs

Keys are checked like every config: unknown sweep keys and dotted keys that
name no config field are refused by name before anything runs, sizes are
capped (:data:`MAX_TRIALS`, :data:`MAX_VALUES`, :data:`MAX_KEYS`). A bad
*value* (``env.n_buyers: -1``) is the trial's own failure: it is recorded with
a one-line error in the table and the other trials run.

Each trial runs in a Ray Tune function trainable (a local Ray by default,
``--address`` / ``RAY_ADDRESS`` joins a cluster) and writes only inside its
folder ``OUT/trials/<id>/``: ``trial.yaml`` (the config it ran, read back with
the usual loader), ``run/`` (the run folder of ``train``), ``solve/``,
``curve.csv`` (``train`` trials: metrics by step), ``error.txt`` (a failed
trial's traceback) and last ``result.json`` (written atomically: its presence
with ``status: ok`` is what makes a trial finished). A rerun of the same sweep
into the same ``OUT`` skips the finished trials and runs the rest (failed ones
included); a sweep with nothing left to run only rebuilds the table.

The sweep folder follows the run-folder rules (``training.run``): a new sweep
takes a missing or empty folder, a rerun only a folder holding this very sweep
(same plan, same base config bytes), one writer at a time (``flock`` on
``OUT/.lock``), no path through a symlink. Tune's own files go to
``OUT/tune/``, the solver cache to ``OUT/cache/``; the table to
``OUT/results.{csv,json}``, ``OUT/summary.csv`` and ``OUT/curves.csv``
(``runner.sweep_table``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import itertools
import json
import math
import os
import shutil
import stat
import sys
import time
import traceback
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attn_env.checks import ConfigError, check_int, show
from attn_env.errors import UnsafePathError, UserError
from attn_env.fileio import atomic_write_text, read_user_json
from training.run import checked_path

__all__ = [
    "DEFAULT_METRICS",
    "JOBS",
    "MAX_KEYS",
    "MAX_TRIALS",
    "MAX_VALUES",
    "SweepSpec",
    "Trial",
    "flat_metrics",
    "load_sweep",
    "plan_trials",
    "run_sweep",
    "run_trial",
]

JOBS = ("simulate", "train+evaluate", "solve")
(
    "What a trial runs: ``simulate`` (``runner.simulate.play``), ``train+evaluate``"
    " (``training.train`` then ``runner.evaluate.evaluate``), ``solve``"
    " (``runner.solve.solve``)."
)
DEFAULT_METRICS = {
    "simulate": ("efficiency", "revenue", "mean_price"),
    "train+evaluate": ("bne_l2", "utility_loss", "efficiency"),
    "solve": ("utility_loss", "iterations", "seconds"),
}
"The table's columns when the sweep names none."
MAX_TRIALS = 10_000
"Most trials in one sweep."
MAX_VALUES = 1_000
"Most values one grid key may take, and most entries of ``list``."
MAX_KEYS = 32
"Most dotted keys a grid, a ``list`` entry or ``set`` may name."
MAX_METRICS = 32
"Most metrics the table may show."
FORMAT = "attn-market-sweep/1"
"Format of ``OUT/sweep.json``."
SWEEP_FILE = "sweep.json"
LOCK = ".lock"
TRIALS = "trials"
RESULT = "result.json"
_SWEEP_KEYS = ("base", "job", "grid", "list", "set", "metrics", "concurrency")


# -- the sweep file ---------------------------------------------------------------


@dataclass(frozen=True)
class SweepSpec:
    """A checked sweep file (see the module docstring for its keys)."""

    path: Path
    "The sweep file."
    base: Path
    "The base config (resolved relative to the sweep file's folder)."
    job: str = "simulate"
    "What every trial runs (:data:`JOBS`)."
    grid: dict[str, list[Any]] = field(default_factory=dict)
    "Dotted key -> values; trials take the cartesian product (in the file's order)."
    entries: list[dict[str, Any]] = field(default_factory=list)
    "The ``list`` key: explicit trials, each crossed with the grid."
    fixed: dict[str, Any] = field(default_factory=dict)
    "The ``set`` key: overrides every trial shares (not part of a design's name)."
    metrics: tuple[str, ...] = ()
    "The table's columns (default :data:`DEFAULT_METRICS` of the job)."
    concurrency: int = 0
    "Trials at once (0: the cluster's CPUs)."
    scenario: str | None = None
    "The scenario the base config names, if it is a scenario config."


@dataclass(frozen=True)
class Trial:
    """One planned trial: its id, overrides, design (overrides but ``seed``), seed."""

    id: str
    overrides: dict[str, Any]
    design: str
    seed: int | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file; one :class:`ConfigError` line if bad.

    The base config is read too (limits of ``read_config_yaml``), so that every
    dotted key is checked against the config's fields before anything runs.
    """
    from attn_env.config import read_config_yaml

    path = Path(path)
    data = read_config_yaml(path)
    where = path.name
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected a mapping of sweep keys, got {show(data)}"
        )
    unknown = [k for k in data if k not in _SWEEP_KEYS]
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(_SWEEP_KEYS)}"
        )
    if "base" not in data:
        raise ConfigError(
            f"{where}: missing key 'base' (the config every trial starts from)"
        )
    if not isinstance(data["base"], str) or not data["base"]:
        raise ConfigError(
            f"{where}.base: expected a file name, got {show(data['base'])}"
        )
    base = path.parent / data["base"]
    job = data.get("job", "simulate")
    if job not in JOBS:
        raise ConfigError(
            f"{where}.job: unknown job {show(job)}; known: {', '.join(JOBS)}"
        )
    base_data = read_config_yaml(base)
    if base_data is None:
        base_data = {}
    if not isinstance(base_data, dict):
        raise ConfigError(f"{base}: expected a mapping, got {show(base_data)}")
    scenario = base_data.get("scenario")
    if scenario is not None and job != "simulate":
        raise ConfigError(
            f"{where}.job: {job!r} does not apply to scenario config {base.name} "
            f"(scenario {show(scenario)}); sweeps of scenarios run simulate"
        )

    def keys(mapping: Any, what: str) -> dict[str, Any]:
        if mapping is None:
            return {}
        if not isinstance(mapping, dict):
            raise ConfigError(
                f"{where}.{what}: expected a mapping, got {show(mapping)}"
            )
        if len(mapping) > MAX_KEYS:
            raise ConfigError(
                f"{where}.{what}: {len(mapping)} keys, over the cap of {MAX_KEYS}"
            )
        for key in mapping:
            if scenario is None:
                check_key(key, f"{where}.{what}")
            elif not isinstance(key, str):
                raise ConfigError(f"{where}.{what}: key {show(key)} is not a string")
        return dict(mapping)

    grid = keys(data.get("grid"), "grid")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"{where}.grid.{key}: expected a non-empty list of values, got "
                f"{show(values)}"
            )
        if len(values) > MAX_VALUES:
            raise ConfigError(
                f"{where}.grid.{key}: {len(values)} values, over the cap of "
                f"{MAX_VALUES}"
            )
    raw_list = data.get("list") or []
    if not isinstance(raw_list, list):
        raise ConfigError(
            f"{where}.list: expected a list of mappings, got {show(raw_list)}"
        )
    if len(raw_list) > MAX_VALUES:
        raise ConfigError(
            f"{where}.list: {len(raw_list)} entries, over the cap of {MAX_VALUES}"
        )
    entries = [keys(e, f"list[{i}]") for i, e in enumerate(raw_list)]
    for i, e in enumerate(entries):
        both = sorted(set(e) & set(grid))
        if both:
            raise ConfigError(
                f"{where}.list[{i}]: key {both[0]!r} is also a grid key; set it in one"
            )
    fixed = keys(data.get("set"), "set")
    metrics = data.get("metrics", list(DEFAULT_METRICS[job]))
    if (
        not isinstance(metrics, list)
        or not metrics
        or not all(isinstance(m, str) and m for m in metrics)
    ):
        raise ConfigError(
            f"{where}.metrics: expected a list of names, got {show(metrics)}"
        )
    if len(metrics) > MAX_METRICS:
        raise ConfigError(
            f"{where}.metrics: {len(metrics)} names, over the cap of {MAX_METRICS}"
        )
    concurrency = check_int(data.get("concurrency", 0), f"{where}.concurrency", 0, 4096)
    spec = SweepSpec(
        path=path,
        base=base,
        job=job,
        grid=grid,
        entries=entries,
        fixed=fixed,
        metrics=tuple(metrics),
        concurrency=concurrency,
        scenario=scenario,
    )
    count = _count(spec)
    if count > MAX_TRIALS:
        raise ConfigError(f"{where}: {count:,} trials, over the cap of {MAX_TRIALS:,}")
    return spec


def check_key(key: Any, where: str) -> None:
    """``ConfigError`` unless dotted ``key`` names a field of ``ExperimentConfig``.

    Dataclass sections are walked field by field; below a mapping field
    (``agents``, ``env.mechanism_params``, ``train.algo_params``, ...) the
    next part is a free name, then the mapping's value type is walked on
    (``agents.buyer.kind``). The values are checked when a trial loads its
    config.
    """
    from attn_env.config import ExperimentConfig

    if not isinstance(key, str) or not key or len(key) > 200:
        raise ConfigError(
            f"{where}: a key must be a dotted config key, got {show(key)}"
        )
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"{where}: key {key!r} has an empty part")
    tp: Any = ExperimentConfig
    for i, part in enumerate(parts):
        shown = ".".join(parts[: i + 1])
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            known = [f.name for f in dataclasses.fields(tp)]
            if part not in known:
                inside = ".".join(parts[:i]) or "the config"
                raise ConfigError(
                    f"{where}: key {key!r}: {inside} has no key {part!r}; known "
                    f"keys: {', '.join(known)}"
                )
            tp = hints[part]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        elif tp is Any:
            return  # free-form parameters: their owner checks them
        else:
            raise ConfigError(
                f"{where}: key {key!r}: {'.'.join(parts[:i])} is a value, not a "
                f"section; it has no key {part!r}"
            )
        del shown


def _count(spec: SweepSpec) -> int:
    n = math.prod(len(v) for v in spec.grid.values())
    return n * max(len(spec.entries), 1)


def plan_trials(spec: SweepSpec) -> list[Trial]:
    """Every trial of the sweep, in order: each ``list`` entry x the grid.

    A trial's *design* is its overrides without ``seed`` (``base`` when none);
    designs that share seeds are compared pairwise in the table.
    """
    base_seed = _base_seed(spec)
    keys = list(spec.grid)
    trials = []
    for entry in spec.entries or [{}]:
        for values in itertools.product(*(spec.grid[k] for k in keys)):
            overrides = {**entry, **dict(zip(keys, values, strict=True))}
            design = ", ".join(
                f"{k}={_short(v)}" for k, v in overrides.items() if k != "seed"
            )
            seed = overrides.get("seed", spec.fixed.get("seed", base_seed))
            trials.append(
                Trial(
                    id=f"t{len(trials):04d}",
                    overrides=overrides,
                    design=design or "base",
                    seed=seed if isinstance(seed, int) else None,
                )
            )
    return trials


def _base_seed(spec: SweepSpec) -> Any:
    from attn_env.config import read_config_yaml

    data = read_config_yaml(spec.base) or {}
    return data.get("seed", 0) if isinstance(data, dict) else 0


def _short(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# -- one trial (runs in a Ray worker) -----------------------------------------------


def trial_config_data(
    base: Any, fixed: Mapping[str, Any], overrides: Mapping[str, Any]
) -> Any:
    """The base config's plain data with ``fixed`` then ``overrides`` set by dotted key.

    Missing sections are created; a part that is a value, not a mapping, is
    one :class:`ConfigError` line.
    """
    data = copy.deepcopy(base) if base is not None else {}
    for key, value in [*fixed.items(), *overrides.items()]:
        node = data
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(
                    f"override {key!r}: {'.'.join(parts[: i + 1])} is "
                    f"{show(nxt)}, not a section"
                )
            node = nxt
        node[parts[-1]] = copy.deepcopy(value)
    return data


def flat_metrics(
    result: Mapping[str, Any], prefix: str = ""
) -> dict[str, float | None]:
    """Every number of ``result`` by dotted name (``mean_utility.buyer_0``).

    Booleans count as 0/1; strings, lists and ``None`` are left out (``nan``
    and infinities become ``None``, as in the JSON of every command).
    """
    out: dict[str, float | None] = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_metrics(value, f"{name}."))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, int | float) or hasattr(value, "dtype"):
            try:
                x = float(value)
            except (TypeError, ValueError):
                continue
            out[name] = x if math.isfinite(x) else None
    return out


def one_line(err: BaseException, limit: int = 300) -> str:
    """An error as one line: the message of a user error, else ``Type: message``."""
    text = " ".join(str(err).split())
    if not isinstance(err, UserError | OSError):
        text = f"{type(err).__name__}: {text}" if text else type(err).__name__
    text = text or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def run_trial(
    out: str | Path,
    job: str,
    base: str | Path,
    fixed: Mapping[str, Any],
    trial: Mapping[str, Any],
    cwd: str | None = None,
) -> dict[str, Any]:
    """Run one trial into ``OUT/trials/<id>/``; its ``result.json`` record.

    Never raises for the trial's own failure: the record then has
    ``status: failed`` and a one-line ``error`` (the traceback goes to the
    trial's ``error.txt``). Relative paths of the config resolve against
    ``cwd`` (the sweep's working folder), as when the config is run alone.
    """
    from attn_env.config import read_config_yaml

    out = Path(out)
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    # every file the sweep writes stays in OUT (the solver's cache included)
    os.environ["ATTN_MARKET_CACHE"] = str(out / "cache")
    folder = _trial_folder(out, trial["id"], clear=True)
    t0 = time.perf_counter()
    record: dict[str, Any] = {
        "id": trial["id"],
        "design": trial["design"],
        "seed": trial["seed"],
        "overrides": trial["overrides"],
    }
    try:
        import yaml

        data = trial_config_data(read_config_yaml(base), fixed, trial["overrides"])
        config_file = folder / "trial.yaml"
        atomic_write_text(config_file, yaml.safe_dump(data, sort_keys=False))
        metrics = _JOBS[job](config_file, folder)
        record.update(status="ok", error=None, metrics=flat_metrics(metrics))
    except Exception as err:  # the trial's failure, recorded; the sweep goes on
        atomic_write_text(folder / "error.txt", traceback.format_exc())
        record.update(status="failed", error=one_line(err), metrics={})
    record["seconds"] = time.perf_counter() - t0
    atomic_write_text(folder / RESULT, json.dumps(record, allow_nan=False))
    return record


def _simulate(config_file: Path, folder: Path) -> dict[str, Any]:
    from runner.scenarios import read_scenario, simulate_scenario
    from runner.simulate import play

    scenario = read_scenario(config_file)
    if scenario is not None:
        return simulate_scenario(*scenario, progress=False)
    from attn_env.config import load_config

    return play(load_config(config_file), progress=False)


def _train_evaluate(config_file: Path, folder: Path) -> dict[str, Any]:
    import torch

    from attn_env.config import load_config
    from runner.evaluate import evaluate
    from runner.sweep_table import read_tb_curve, write_curve
    from training import train

    config = load_config(config_file)
    run = folder / "run"
    manifest = train(config, run, progress=False)
    torch.set_num_threads(1)  # small batches: extra threads only contend
    result = evaluate(config, run)
    write_curve(folder / "curve.csv", read_tb_curve(run / "tb"))
    result["wall_s"] = manifest.get("wall_s")
    return result


def _solve(config_file: Path, folder: Path) -> dict[str, Any]:
    from attn_env.config import load_config
    from runner.solve import solve

    solution = solve(load_config(config_file), out=folder / "solve")
    summary = solution.summary()
    summary["utility_loss"] = solution.utility_loss
    return summary


_JOBS: dict[str, Callable[[Path, Path], dict[str, Any]]] = {
    "simulate": _simulate,
    "train+evaluate": _train_evaluate,
    "solve": _solve,
}


def _tune_trainable(config: dict[str, Any]) -> None:
    """The Tune function trainable: one trial, its record reported to Tune."""
    from ray import tune

    record = run_trial(**config["ctx"], trial=config["trial"])
    tune.report({"ok": float(record["status"] == "ok"), "seconds": record["seconds"]})


# -- the sweep folder ---------------------------------------------------------------


def _inside(out: Path, rel: str) -> Path:
    """``out / rel`` once no existing component of it is a symlink or a non-folder."""
    return checked_path(out, rel, "path", where=out, folder="sweep folder")


TRIAL_ENTRIES = ("trial.yaml", "error.txt", RESULT, "run", "curve.csv", "solve")
"What a trial writes in its folder: all that a retry removes of an earlier attempt."


def _trial_folder(out: Path, trial_id: str, clear: bool = False) -> Path:
    """``OUT/trials/<id>`` (checked); with ``clear``, rid of what an earlier
    attempt wrote (:data:`TRIAL_ENTRIES`; anything else there is left alone)."""
    folder = _inside(out, f"{TRIALS}/{trial_id}")
    if clear and folder.exists():
        for child in sorted(folder.iterdir()):
            if child.name not in TRIAL_ENTRIES:
                continue
            mode = os.lstat(child).st_mode
            if stat.S_ISDIR(mode) and not stat.S_ISLNK(mode):
                shutil.rmtree(child)
            else:
                child.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class SweepFolder:
    """The locked ``OUT`` folder of one sweep: a fresh one, or this sweep's own."""

    def __init__(self, out: str | Path, plan: dict[str, Any]) -> None:
        self.path = Path(out)
        try:
            self.root = self.path.resolve()
        except (OSError, RuntimeError) as err:
            raise UnsafePathError(
                f"{out}: cannot open the sweep folder ({err})"
            ) from None
        self._fd: int | None = None
        self.resumed = self._check(plan, locked=False)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self.resumed = self._check(plan, locked=True)
            if not self.resumed:
                atomic_write_text(
                    self.root / SWEEP_FILE, json.dumps(plan, indent=1, allow_nan=False)
                )
        except BaseException:
            self.close()
            raise

    def _check(self, plan: dict[str, Any], locked: bool) -> bool:
        """Whether ``OUT`` holds this sweep (a rerun); refuse anything else."""
        try:
            mode = os.lstat(self.root).st_mode
        except FileNotFoundError:
            return False
        if not stat.S_ISDIR(mode):
            raise UserError(f"--out {str(self.path)!r} is not a folder")
        names = sorted(set(os.listdir(self.root)) - {LOCK})
        if SWEEP_FILE not in names:
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                raise UserError(
                    f"--out {str(self.path)!r} is not empty ({shown}) and holds no "
                    "sweep of attn-market; a new sweep needs a new or empty folder"
                )
            return False
        old = read_user_json(_inside(self.root, SWEEP_FILE), "sweep record")
        if not isinstance(old, dict) or old.get("format") != FORMAT:
            raise UserError(f"{self.path / SWEEP_FILE}: not a sweep record of {FORMAT}")
        for key, what in (
            ("base_sha256", "the base config changed"),
            ("job", "the job changed"),
            ("fixed", "the set: overrides changed"),
            ("trials", "the trials changed"),
        ):
            if old.get(key) != plan[key]:
                raise UserError(
                    f"--out {str(self.path)!r} holds another sweep ({what} since it "
                    "started); rerun the sweep it holds or choose another --out"
                )
        return True

    def _lock(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(_inside(self.root, LOCK), flags, 0o666)
        except OSError as err:
            raise UnsafePathError(
                f"{self.path / LOCK}: cannot open the sweep's lock ({err.strerror})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(
                f"--out {str(self.path)!r} is in use by another sweep; wait for it "
                "to end or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid()}).encode(), 0)
        self._fd = fd

    def close(self) -> None:
        """Release the lock (the lock file stays)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def finished(self, trials: Sequence[Trial]) -> dict[str, dict[str, Any]]:
        """The records of this sweep's finished trials (``status: ok``), by id.

        A record that does not read back, or that ran other overrides, is not
        finished: its trial runs again.
        """
        done = {}
        for t in trials:
            path = _inside(self.root, f"{TRIALS}/{t.id}/{RESULT}")
            if not path.exists():
                continue
            try:
                record = read_user_json(path, "trial record")
            except UserError:
                continue
            if (
                isinstance(record, dict)
                and record.get("status") == "ok"
                and record.get("overrides") == t.overrides
                and isinstance(record.get("metrics"), dict)
            ):
                done[t.id] = record
        return done

    def record(self, trial: Trial) -> dict[str, Any] | None:
        """The trial's record (finished or failed), or ``None`` if it has none."""
        path = _inside(self.root, f"{TRIALS}/{trial.id}/{RESULT}")
        if not path.exists():
            return None
        try:
            record = read_user_json(path, "trial record")
        except UserError:
            return None
        return record if isinstance(record, dict) else None


def sweep_plan(spec: SweepSpec, trials: Sequence[Trial]) -> dict[str, Any]:
    """What ``OUT/sweep.json`` holds: what must not change between reruns."""
    from runner.results import jsonable

    return jsonable(
        {
            "format": FORMAT,
            "sweep": str(spec.path),
            "base": str(spec.base),
            "base_sha256": hashlib.sha256(spec.base.read_bytes()).hexdigest(),
            "job": spec.job,
            "fixed": spec.fixed,
            "trials": [t.to_dict() for t in trials],
        }
    )


# -- the sweep on Ray Tune ----------------------------------------------------------


def _import_tune():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise UserError(
            'Ray Tune is not installed; run `pip install -e ".[rllib]"`'
        ) from None
    return ray, tune


def _start_ray(ray: Any, address: str | None, cpus: int) -> None:
    """A local Ray of ``cpus`` CPUs, or the cluster at ``address`` (one line if not)."""
    from training.ray_start import init_ray

    init_ray(ray, address, runners=max(cpus, 2) - 1)


class _Progress:
    """A progress bar of the sweep's trials on stderr (a Tune callback drives it)."""

    def __init__(self, total: int, done: int, enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.failed = 0
        self.bar = tqdm(
            total=total,
            initial=done,
            unit="trial",
            desc="sweep",
            disable=None if enabled else True,
            file=sys.stderr,
        )

    def trial_done(self, ok: bool) -> None:
        self.failed += not ok
        if self.failed:
            self.bar.set_postfix(failed=self.failed)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _callback(tune: Any, progress: _Progress) -> Any:
    class Progress(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            progress.trial_done(bool(result.get("ok")))

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.trial_done(False)

    return Progress()


def run_sweep(
    sweep: str | Path,
    out: str | Path,
    address: str | None = None,
    concurrency: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the sweep file ``sweep`` into ``out`` on Ray Tune; the table.

    Args:
        sweep: the sweep file.
        out: the sweep folder (new or empty, or this sweep's own to resume it).
        address: a Ray cluster to join (default ``RAY_ADDRESS``, else a local Ray).
        concurrency: trials at once (default the file's ``concurrency``; 0: the
            CPUs Ray has).
        progress: a progress bar of trials on stderr.

    Returns:
        ``runner.sweep_table.build_table``'s table, also written to ``out``.
    """
    from runner.sweep_table import build_table, write_tables

    spec = load_sweep(sweep)
    if concurrency is not None:
        check_int(concurrency, "--concurrency", 0, 4096)
    trials = plan_trials(spec)
    folder = SweepFolder(out, sweep_plan(spec, trials))
    try:
        done = folder.finished(trials)
        todo = [t for t in trials if t.id not in done]
        run_info = {"trials": len(trials), "skipped": len(done), "ran": len(todo)}
        if todo:
            run_info.update(
                _run_on_tune(
                    spec, folder, todo, len(done), address, concurrency, progress
                )
            )
        records = []
        for t in trials:
            record = folder.record(t)
            if record is None:
                record = {
                    "id": t.id,
                    "design": t.design,
                    "seed": t.seed,
                    "overrides": t.overrides,
                    "status": "failed",
                    "error": run_info.get("errors", {}).get(
                        t.id, "the trial did not finish"
                    ),
                    "metrics": {},
                }
            records.append(record)
        run_info.pop("errors", None)
        table = build_table(spec, trials, records, folder.root)
        table["run"] = run_info
        write_tables(folder.root, table)
        return table
    finally:
        folder.close()


def _run_on_tune(
    spec: SweepSpec,
    folder: SweepFolder,
    todo: list[Trial],
    done: int,
    address: str | None,
    concurrency: int | None,
    progress: bool,
) -> dict[str, Any]:
    """Run ``todo`` as Tune trials; Ray always shut down. Errors Tune saw, by id."""
    ray, tune = _import_tune()
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    want = spec.concurrency if concurrency is None else concurrency
    cpus = os.cpu_count() or 1
    bar = _Progress(done + len(todo), done, progress)
    t0 = time.perf_counter()
    stop = _exit_on_sigterm()
    try:
        _start_ray(ray, address, max(cpus, want))
        cluster = int(ray.cluster_resources().get("CPU", cpus))
        limit = want or cluster
        ctx = {
            "out": str(folder.root),
            "job": spec.job,
            "base": str(spec.base.resolve()),
            "fixed": spec.fixed,
            "cwd": os.getcwd(),
        }
        storage = _inside(folder.root, "tune")
        storage.mkdir(exist_ok=True)
        name = f"run-{sum(1 for _ in storage.iterdir()):03d}"
        tuner = tune.Tuner(
            tune.with_resources(_tune_trainable, {"cpu": 1}),
            param_space={
                "ctx": ctx,
                "trial": tune.grid_search([t.to_dict() for t in todo]),
            },
            tune_config=tune.TuneConfig(
                max_concurrent_trials=limit,
                reuse_actors=True,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=str(storage),
                verbose=0,
                callbacks=[_callback(tune, bar)],
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
        with _quiet_tune():
            grid = tuner.fit()
        errors = {}
        for result in grid:
            if result.error is not None:
                trial_id = (result.config or {}).get("trial", {}).get("id")
                if trial_id:
                    errors[trial_id] = one_line(result.error)
        return {
            "concurrency": limit,
            "cluster_cpus": cluster,
            "seconds": time.perf_counter() - t0,
            "errors": errors,
        }
    finally:
        bar.close()
        if ray.is_initialized():
            ray.shutdown()
        stop()


def _exit_on_sigterm() -> Callable[[], None]:
    """``kill PID`` ends the sweep as Ctrl-C does (Ray shut down on the way out);
    returns what restores the former handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)


def _trial_name(trial: Any) -> str:
    return str(trial.config["trial"]["id"])


@contextlib.contextmanager
def _quiet_tune():
    """Tune's own status lines off stdout (the sweep shows its progress bar)."""
    import logging

    logger = logging.getLogger("ray.tune")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
