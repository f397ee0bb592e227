"""What the Snakemake rules ask: the jobs of every experiment, their files, and what each job depends on.

The Snakefile builds one :class:`Plan` from its config (scale, results folder, user
overrides). The plan composes every experiment config at the scale (Hydra, as the
stages do), collects the units of work its analysis needs (datasets, features,
trained models, Hessians, trajectories) and answers the rules' input functions.

Snakemake reruns a job when its ``params`` change. Every rule carries two digests:

- ``config``: of the composed config section the stage reads (the dataset without
  its ``training`` pool for prepare_dataset, ``model.descriptor`` for
  compute_features, the model without ``rigidity`` plus ``dataset.training`` for a
  fit, the model without ``fit`` plus ``dataset.training`` for a Hessian shard, the
  experiment without ``plot`` plus its selected model for the analysis, the whole
  experiment for the plot);
- ``code``: of the stage's source, the modules it imports from this project
  (``experiments``, ``rigidity``) followed transitively, compared as syntax trees
  without docstrings, so that editing a comment or a docstring reruns nothing.

A change reruns the stages that read it and everything downstream of them, nothing else.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from . import layout
from .config import REPOSITORY, compose, experiment_module, names, to_plain

__all__ = ["Plan", "code_digest", "source_files", "hydra_dict"]

PACKAGES = ("experiments", "rigidity")
#: the plumbing every stage imports (composition, entry points, the layout of files): what it changes reaches a
#: result only through the composed config, which is digested on its own, so its code is not part of a stage's
PLUMBING = ("experiments.config", "experiments._stage", "experiments.workflow", "experiments.layout")


# ----------------------------------------------------------------------------------------------
# code digests


def _module_file(name: str) -> Path | None:
    """The source file of a module of this project, or None (a third-party module, or a name in a package)."""
    parts = name.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = REPOSITORY.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _prefixes(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def _imports(path: Path, module: str) -> tuple[set[str], set[str]]:
    """The project modules a file imports anywhere in its body (function-level imports included).

    Returns (imported, parents): ``from rigidity.descriptors.ace import ACE`` imports
    ``rigidity.descriptors.ace`` and runs the ``__init__`` of its parents ``rigidity`` and
    ``rigidity.descriptors``; ``from rigidity import Hessian`` imports ``rigidity`` itself.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - (node.level - 1)] if node.level > 1 else parent
                base = ".".join(parent + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:  # a submodule, or a name defined in the module `base`
                sub = f"{base}.{alias.name}"
                imported.add(sub if _module_file(sub) is not None else base)
    imported = {m for m in imported if _module_file(m) is not None}
    parents = {p for m in imported for p in _prefixes(m) if _module_file(p) is not None}
    return imported, parents


@cache
def source_files(modules: tuple[str, ...]) -> tuple[Path, ...]:
    """Files of ``modules`` and of every project module they import, transitively.

    A package's ``__init__`` runs when one of its modules is imported: its file counts, but
    what it imports in turn counts only where something imports the package itself (so an
    edit of ``rigidity/hessian.py`` does not rerun the descriptor features of
    ``rigidity.descriptors.ace``, whose parent ``rigidity/__init__.py`` imports it).
    """
    todo, files, followed = list(modules), {}, set()
    while todo:
        name = todo.pop()
        if name in followed:
            continue
        path = _module_file(name)
        if path is None:
            raise ValueError(f"{name} is not a module of this project ({', '.join(PACKAGES)})")
        followed.add(name)
        files[name] = path
        imported, parents = _imports(path, name)
        for p in parents - set(PLUMBING):
            files.setdefault(p, _module_file(p))
        todo.extend(imported - followed - set(PLUMBING))
    return tuple(sorted(set(files.values())))


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def _file_digest(path: Path) -> str:
    if path.suffix == ".py":  # the code as ast.unparse writes it: no comments, docstrings or layout
        text = ast.unparse(_strip_docstrings(ast.parse(path.read_text(), filename=str(path))))
    else:
        text = path.read_text()
    return hashlib.sha256(text.encode()).hexdigest()


def code_digest(modules: Iterable[str], extra_files: Iterable[str | Path] = ()) -> str:
    """Digest of the code of a stage: its modules, their project imports, and any data files it reads."""
    files = list(source_files(tuple(sorted(modules)))) + [REPOSITORY / f for f in extra_files]
    h = hashlib.sha256()
    for f in sorted(set(files)):
        h.update(str(Path(f).relative_to(REPOSITORY)).encode())
        h.update(_file_digest(Path(f)).encode())
    return h.hexdigest()[:16]


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _without(node: dict | None, *keys: str) -> dict | None:
    return None if node is None else {k: v for k, v in node.items() if k not in keys}


# What each stage reads of a composed config: the digests of the rules and the provenance the stages record are
# both made from these, so that a file's recorded config is the one its rerun trigger compares.


def dataset_section(dataset: dict) -> dict:
    """What prepare_dataset reads: the dataset without its description, training pool and unused sources."""
    out = _without(dataset, "description", "training")
    for source in ("file", "download"):
        if out.get("source") != source:
            out.pop(source, None)
    if "download" in out:
        out["download"] = _without(out["download"], "note")
    return out


def features_section(model: dict) -> dict:
    """What compute_features reads: the model's name, module and kind, and its descriptor."""
    return _without(model, "fit", "rigidity")


def train_section(model: dict) -> dict:
    """What fit_model / train_model read: the model without its rigidity section."""
    return _without(model, "rigidity")


def hessian_section(model: dict) -> dict:
    """What accumulate_hessian reads: the model without its fit section."""
    return _without(model, "fit")


# ----------------------------------------------------------------------------------------------
# Hydra arguments of a rule


def _hydra_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    text = str(value)
    if '"' in text or "\\" in text:
        raise ValueError(f"a path with a quote or backslash cannot be passed to a stage: {text!r}")
    return f'"{text}"'


def hydra_dict(mapping: dict[str, Any], shell: bool = True) -> str:
    """A Hydra dict override value {key: "path", ...}; shell-quoted as one word unless ``shell=False``."""
    body = "{" + ",".join(f"{k}:{_hydra_value(mapping[k])}" for k in sorted(mapping)) + "}"
    return shlex.quote(body) if shell else body


# ----------------------------------------------------------------------------------------------
# the plan


@dataclass
class Experiment:
    name: str
    figure: int
    implemented: bool  # its module defines analyse() and plot()
    model: str | None = None  # the model config it selects (Figs 4, 5), whose overrides its stages get
    inputs: dict[str, str] = field(default_factory=dict)  # key -> path
    outputs: dict[str, str] = field(default_factory=dict)  # analysis output name -> path


#: what a plan is derived from: every config, every schema and stage module, the library (code digests)
_PLAN_SOURCES = ("config/**/*.yaml", "experiments/**/*.py", "experiments/*.mplstyle", "rigidity/**/*.py")


def _tree_digest(config: dict) -> str:
    import hydra
    import omegaconf

    h = hashlib.sha256(json.dumps([config, hydra.__version__, omegaconf.__version__], sort_keys=True,
                                  default=str).encode())
    for pattern in _PLAN_SOURCES:
        for f in sorted(REPOSITORY.glob(pattern)):
            h.update(str(f.relative_to(REPOSITORY)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:24]


class Plan:
    """Every job the workflow can run at one scale, with its files and digests.

    Composing every config takes Hydra seconds, so the plan is kept in ``cache_dir``
    (Snakemake's own ``.snakemake/`` by default), keyed by the digest of every config
    file, every module of ``experiments`` and ``rigidity`` and the workflow config: any
    edit recomputes it, and a later ``snakemake`` (or every job on a cluster) reads it back.

    Parameters
    ----------
    config : the Snakemake config (config/workflow.yaml and --config): ``scale``, ``results``
        and the user's overrides per dataset, model and experiment.
    cache_dir : folder of the cached plans (None: no cache).
    """

    def __init__(self, config: dict, cache_dir: str | Path | None = ".snakemake/rigidity-plan"):
        self.scale = str(config["scale"])
        self.results = f"{config['results']}/{self.scale}"
        self.overrides = {
            "dataset": dict(config.get("dataset_overrides") or {}),
            "model": dict(config.get("model_overrides") or {}),
            "experiment": dict(config.get("experiment_overrides") or {}),
        }
        self.datasets = names("dataset")
        self.mds = names("md")
        for group, given in self.overrides.items():
            unknown = sorted(set(given) - set(names(group)))
            if unknown:
                raise ValueError(f"{group}_overrides (config/workflow.yaml) names unknown {group}s {unknown}; "
                                 f"config/{group}/ has {names(group)}")
        self._cfg: dict[tuple, Any] = {}
        self._memo: dict[str, Any] = {}
        plain = {k: config.get(k) for k in ("scale", "results", "dataset_overrides", "model_overrides",
                                             "experiment_overrides")}
        cache = Path(cache_dir) / f"{_tree_digest(plain)}.json" if cache_dir is not None else None
        if cache is not None and cache.is_file():
            try:
                self._memo = json.loads(cache.read_text())
            except ValueError:
                self._memo = {}
        if not self._memo:
            self._build()
            if cache is not None:
                self._save(cache)
        self.models = list(self._memo["kinds"])
        self.experiments = {name: Experiment(**e) for name, e in self._memo["experiments"].items()}

    def _build(self) -> None:
        """Compose every config, check every experiment, and compute what its jobs need (on a cache miss)."""
        for group in ("dataset", "model", "md"):  # a config's name is the path of its results: its file's
            for name in names(group):
                got = self.compose(**{group: name})[group].name
                if got != name:
                    raise ValueError(f"config/{group}/{name}.yaml has {group}.name = {got!r}: it must be {name!r}, "
                                     "the name its results are filed under")
        self._memo["kinds"] = {m: str(self.compose(model=m).model.kind) for m in names("model")}
        self._memo["hessian_shards"] = int(self.compose().scale.hessian_shards)
        self._memo["experiments"] = {name: self._experiment(name) for name in names("experiment")}
        keys = {k for e in self._memo["experiments"].values() for k in e["inputs"]}
        for d in self.datasets:
            self.dataset_digest(d), self.dataset_code(d), self.dataset_file(d)
        for m, kind in self._memo["kinds"].items():
            if kind == "linear":
                self.features_digest(m), self.model_code("features", m)
            self.model_code("train", m), self.model_code("hessian", m)
        for key in keys:
            top, *parts = key.split("/")
            if top in ("models", "hessians"):
                self.train_digest(parts[0], parts[1]), self.hessian_digest(parts[0], parts[1])
            if top == "trajectories":
                self.md_digest(parts[0]), self.model_code("md", parts[1])
        self.stage_code("hessian")
        for name in self._memo["experiments"]:
            self.analysis_digest(name), self.plot_digest(name)
            self.experiment_code("analyse", name), self.experiment_code("plot", name)

    def _save(self, cache: Path) -> None:
        import tempfile

        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{cache.stem}.", suffix=".tmp", dir=cache.parent)
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(self._memo))  # key order kept: it is the order of the rules' inputs
            os.replace(tmp, cache)
        except OSError:  # a read-only working directory: no cache, same plan
            pass

    def _memoised(self, key: str, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    # -- composition ---------------------------------------------------------
    def user_overrides(self, **groups: str | None) -> list[str]:
        """The user's overrides (config/workflow.yaml) of the configs a stage composes."""
        out = []
        for group, name in groups.items():
            if name is not None and group in self.overrides:
                out += [str(o) for o in self.overrides[group].get(name, [])]
        return out

    def compose(self, **groups: str | None):
        """The config a stage composes with ``group=name`` selections (cached in memory)."""
        key = tuple(sorted((g, n) for g, n in groups.items() if n is not None))
        if key not in self._cfg:
            args = [f"scale={self.scale}"] + [f"{g}={n}" for g, n in key] + self.user_overrides(**groups)
            try:
                self._cfg[key] = compose(args)
            except Exception as err:
                raise ValueError(f"composing {' '.join(args)}: {err}") from err
        return self._cfg[key]

    def overrides_arg(self, **groups: str | None) -> str:
        """The user's overrides as shell words for a stage's command line."""
        return " ".join(shlex.quote(o) for o in self.user_overrides(**groups))

    def model(self, name: str):
        """The composed model node (a model config never depends on the other groups' choices)."""
        if name not in names("model"):
            raise ValueError(f"unknown model {name!r} (config/model/: {names('model')})")
        return self.compose(model=name).model

    def dataset(self, name: str):
        if name not in self.datasets:
            raise ValueError(f"unknown dataset {name!r} (config/dataset/: {self.datasets})")
        return self.compose(dataset=name).dataset

    def kind(self, model: str) -> str:
        kinds = self._memo.get("kinds") or {}
        return kinds[model] if model in kinds else str(self.model(model).kind)

    def models_of_kind(self, kind: str) -> list[str]:
        return [m for m in self.models if self.kind(m) == kind]

    @property
    def hessian_shards(self) -> int:
        """accumulate_hessian jobs per Hessian at this scale (``scale.hessian_shards``)."""
        return int(self._memo["hessian_shards"])

    # -- files -------------------------------------------------------------
    def path(self, key: str) -> str:
        kind = self.kind(key.split("/")[1]) if key.startswith("models/") else "linear"
        return f"{self.results}/{layout.path_of(key, kind)}"

    def _experiment(self, name: str) -> dict:
        cfg = self.compose(experiment=name)
        if cfg.experiment.name != name:
            raise ValueError(f"config/experiment/{name}.yaml has experiment.name = {cfg.experiment.name!r}: it must be "
                             f"{name!r}, the name its tables and figures are filed under")
        model = cfg.model.name if cfg.get("model") is not None else None
        if model is not None and self.user_overrides(model=model):  # the analysis gets the model's overrides too
            cfg = self.compose(experiment=name, model=model)
        self._cfg[("experiment", name)] = cfg
        module = experiment_module(name)
        s = cfg.experiment
        if hasattr(module, "check"):  # values a schema cannot check fail here, at `snakemake -n`
            module.check(cfg)
        keys = [layout.data_key(d) for d in s.datasets]
        keys += [layout.features_key(f.model, f.dataset, f.kind) for f in s.features]
        keys += [layout.model_key(m.model, m.dataset, r) for m in s.models for r in m.runs]
        keys += [layout.hessian_key(h.model, h.dataset, h.rows) for h in s.hessians]
        keys += [layout.trajectory_key(t.md, t.model, t.dataset, r) for t in s.trajectories for r in t.runs]
        for key in keys:
            self._check_key(key, name)
        named: dict[str, str] = {}
        for key in keys:  # the rule's input names: a collision would drop a file from its inputs
            other = named.setdefault(layout.input_name(key), key)
            if other != key:
                raise ValueError(f"experiment {name}: inputs {other} and {key} have the same rule input name "
                                 f"{layout.input_name(key)!r}; rename one of them")
        outputs = getattr(module, "OUTPUTS", {"table": "csv"})
        return dict(
            name=name, figure=int(s.figure), implemented=hasattr(module, "analyse") and hasattr(module, "plot"),
            model=model, inputs={k: self.path(k) for k in dict.fromkeys(keys)},
            outputs={o: f"{self.results}/tables/{name}.{ext}" if o == "table" else
                     f"{self.results}/tables/{name}.{o}.{ext}" for o, ext in outputs.items()},
        )

    def _check_key(self, key: str, experiment: str) -> None:
        """Refuse, at `snakemake -n`, a unit an experiment names that no rule could build."""
        from .config import FEATURE_KINDS
        from .runs import parse_run

        parts = key.split("/")
        where = f"experiment {experiment}: {key}"

        def run_key(text):
            try:
                return parse_run(text)
            except ValueError as err:
                raise ValueError(f"{where}: {err}") from None

        if parts[0] == "data":
            if parts[1] not in self.datasets:
                raise ValueError(f"{where}: unknown dataset {parts[1]!r} (config/dataset/: {self.datasets})")
            return
        if parts[0] == "trajectories" and parts[1] not in self.mds:
            raise ValueError(f"{where}: unknown MD protocol {parts[1]!r} (config/md/: {self.mds})")
        model, dataset, unit = parts[-3:]
        if model not in names("model"):
            raise ValueError(f"{where}: unknown model {model!r} (config/model/: {names('model')})")
        if dataset not in self.datasets:
            raise ValueError(f"{where}: unknown dataset {dataset!r} (config/dataset/: {self.datasets})")
        kind = self.kind(model)
        if parts[0] == "features":
            if kind != "linear":
                raise ValueError(f"{where}: descriptor features are for linear models, {model} is a network")
            if unit not in FEATURE_KINDS:
                raise ValueError(f"{where}: kind {unit!r} is not one of {list(FEATURE_KINDS)}")
            return
        run = run_key(unit)
        if parts[0] == "trajectories" and kind != "network":
            raise ValueError(f"{where}: MD needs a network model, {model} is linear")
        sets = self.dataset(dataset).training.sets
        if run.name is not None and run.name not in sets:
            raise ValueError(f"{where}: dataset {dataset} names no such training set {run.name!r} "
                             f"(dataset.training.sets has {sorted(sets) or 'none'})")

    # -- targets -------------------------------------------------------------
    def dataset_targets(self) -> list[str]:
        return [self.path(layout.data_key(d)) for d in self.datasets]

    def figure_targets(self, experiments: Iterable[str]) -> list[str]:
        return [f"{self.results}/figures/{e}.{ext}" for e in experiments for ext in ("pdf", "png")]

    def implemented(self) -> list[str]:
        return [e for e, x in self.experiments.items() if x.implemented]

    # -- digests (memoised: the cached plan holds those of every job of every experiment) -----------
    def dataset_digest(self, dataset: str) -> str:
        def compute():
            cfg = self.compose(dataset=dataset)
            return _digest(dataset_section(to_plain(cfg.dataset)), int(cfg.seed))

        return self._memoised(f"digest/dataset/{dataset}", compute)

    def dataset_file(self, dataset: str) -> str:
        """The user's file a dataset with ``source: file`` reads (absolute), or "" for other sources."""
        def compute():
            from .data import resolve_path

            ds = self.dataset(dataset)
            return str(resolve_path(ds.file.path).resolve()) if ds.source == "file" and ds.file.path else ""

        return self._memoised(f"file/dataset/{dataset}", compute)

    def features_digest(self, model: str) -> str:
        return self._memoised(f"digest/features/{model}",
                              lambda: _digest(features_section(to_plain(self.model(model)))))

    def train_digest(self, model: str, dataset: str) -> str:
        return self._memoised(f"digest/train/{model}/{dataset}", lambda: _digest(
            train_section(to_plain(self.model(model))), to_plain(self.dataset(dataset).training)))

    def hessian_digest(self, model: str, dataset: str) -> str:
        return self._memoised(f"digest/hessian/{model}/{dataset}", lambda: _digest(
            hessian_section(to_plain(self.model(model))), to_plain(self.dataset(dataset).training)))

    def md_digest(self, md: str) -> str:
        return self._memoised(f"digest/md/{md}", lambda: _digest(to_plain(self.compose(md=md).md)))

    def _experiment_cfg(self, experiment: str):
        if ("experiment", experiment) not in self._cfg:
            self._experiment(experiment)
        return self._cfg[("experiment", experiment)]

    def analysis_digest(self, experiment: str) -> str:
        def compute():
            cfg = self._experiment_cfg(experiment)
            return _digest(_without(to_plain(cfg.experiment), "plot"), to_plain(cfg.get("model")))

        return self._memoised(f"digest/analysis/{experiment}", compute)

    def plot_digest(self, experiment: str) -> str:
        return self._memoised(f"digest/plot/{experiment}",
                              lambda: _digest(to_plain(self._experiment_cfg(experiment).experiment)))

    def dataset_code(self, dataset: str) -> str:
        return self._memoised(f"code/dataset/{dataset}",
                              lambda: code_digest(["experiments.data", f"experiments.datasets.{dataset}"]))

    def model_code(self, stage: str, model: str) -> str:
        return self._memoised(f"code/{stage}/{model}", lambda: code_digest(
            [f"experiments.{stage}", f"experiments.models.{self.model(model).module}"]))

    def stage_code(self, stage: str) -> str:
        return self._memoised(f"code/{stage}", lambda: code_digest([f"experiments.{stage}"]))

    def experiment_code(self, stage: str, experiment: str) -> str:
        extra = ["experiments/figures.mplstyle"] if stage == "plot" else []
        return self._memoised(f"code/{stage}/{experiment}",
                              lambda: code_digest([f"experiments.{stage}", f"experiments.{experiment}"], extra))
