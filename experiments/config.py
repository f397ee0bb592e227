"""Typed configs: the schemas every YAML file under config/ is checked against, and their composition.

Hydra composes ``config/main.yaml`` with the command line. Every group file
(``dataset/``, ``model/``, ``md/``, ``experiment/``) names its schema in its
defaults list, so an unknown or misspelt key, or a value of the wrong type, fails
at composition with the key's full name and the file it came from:

- datasets: :class:`DatasetConfig` (``schema/dataset``);
- models: the ``Config`` dataclass of ``experiments/models/<module>.py``
  (``schema/model/<module>``), derived from :class:`ModelConfig`;
- MD protocols: :class:`experiments.md.MDConfig` (``schema/md``);
- experiments: the ``Settings`` dataclass of ``experiments/<experiment>.py``
  (``schema/experiment/<experiment>``), derived from :class:`ExperimentConfig`.

Scales are Hydra specialisations: after the group files, main.yaml composes
``config/sizes/<group>/<name>/<scale>.yaml`` where it exists (what ``quick``
means for that one config, in one file), and the command line is applied last,
so ``experiment.n_picks=5 scale=smoke`` gives 5.

Schemas are found, not registered by hand: every ``experiments/models/*.py`` and
every ``experiments/<experiment>.py`` with a config under ``config/experiment/``
is imported (they import nothing heavy at module level).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

REPOSITORY = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPOSITORY / "config"
SCALES = ("smoke", "quick", "paper")
MODEL_KINDS = ("linear", "network")
FEATURE_KINDS = ("structures", "atoms")

__all__ = [
    "CONFIG_DIR",
    "SCALES",
    "MODEL_KINDS",
    "FEATURE_KINDS",
    "ScaleConfig",
    "MainConfig",
    "TrainingPool",
    "DatasetConfig",
    "ModelConfig",
    "FeaturesNeed",
    "ModelsNeed",
    "HessianNeed",
    "TrajectoriesNeed",
    "ExperimentConfig",
    "names",
    "register",
    "compose",
    "model_module",
    "experiment_module",
    "to_plain",
]


# ----------------------------------------------------------------------------------------------
# scale and primary config


@dataclass
class ScaleConfig:
    name: str = MISSING  # smoke | quick | paper
    hessian_shards: int = 1  # accumulate_hessian jobs per Hessian built from a dataset (map-reduce)


@dataclass
class MainConfig:
    scale: ScaleConfig = MISSING
    dataset: Any = None
    model: Any = None
    md: Any = None
    experiment: Any = None
    seed: int = 20240412  # master seed; dataset generators and splits derive theirs from it
    results_dir: str = "results"  # root of every generated file
    raw_dir: str = "data/raw"  # downloads land here (gitignored)
    output: str | None = None  # the stage's one output file, named by the Snakemake rule
    outputs: Any = None  # {name: file}, for stages with several outputs (the analyses)
    inputs: Any = None  # {key: file} of everything the stage reads, named by the rule (experiments/layout.py)
    kind: str = "structures"  # compute_features: structures (summed rows) | atoms (per-atom rows)
    run: str | None = None  # train/fit: the run key (README: run keys), e.g. n1000-s3-seed7
    rows: str | None = None  # accumulate_hessian: the run key of the rows
    shard: int = 0  # accumulate_hessian: this job's shard, 0 <= shard < n_shards
    n_shards: int = 1  # accumulate_hessian: shards of the rows
    step: str | None = None  # hessian stage: accumulate | merge


# ----------------------------------------------------------------------------------------------
# datasets


@dataclass
class FileSource:
    path: str | None = None  # extxyz file read when source=file
    energy_key: str | None = "energy"  # info key of the total energy (eV)
    forces_key: str | None = "forces"  # arrays key of the forces (eV/A); null when absent
    reference_method: str | None = None  # what computed the file's labels (required)


@dataclass
class DownloadSource:
    url: str | None = None  # public archive
    sha256: str | None = None  # its checksum
    filename: str | None = None  # name under raw_dir (default: from the URL)
    note: str = ""  # where the archive comes from, or why there is none


@dataclass
class TrainingPool:
    """What run keys select from a dataset (experiments/runs.py)."""

    pool: str | None = None  # info[pool_key] of the training pool, e.g. train; null: every structure (file order)
    pool_key: str = "subset"  # info key that pool is a value of
    order_key: str | None = None  # info key the pool is sorted by (stable); null: file order
    sets: dict[str, Any] = field(default_factory=dict)  # named training sets: {name: {value of info[sets_key]: count}}
    sets_key: str = "subset"  # info key whose values the named sets count
    sets_order: list[str] = field(default_factory=list)  # values of sets_key, in the order their shuffles are drawn
    sets_seed: int = 0  # numpy default_rng seed of those shuffles


@dataclass
class DatasetConfig:
    name: str = MISSING  # dataset name, also the output file's stem
    description: str = MISSING  # one line: what the structures are and which figures use them
    source: str = MISSING  # download | file | generate
    periodic: bool = MISSING  # structures carry a cell
    file: FileSource = field(default_factory=FileSource)
    download: DownloadSource = field(default_factory=DownloadSource)
    generate: dict[str, Any] = field(default_factory=dict)  # generator parameters (the dataset module's Params)
    training: TrainingPool = field(default_factory=TrainingPool)


# ----------------------------------------------------------------------------------------------
# models


@dataclass
class ModelConfig:
    """Fields every model config has; a model module's ``Config`` adds its own sections.

    Sections by convention: ``descriptor`` (what compute_features reads), ``fit`` or the
    network's training keys (what fit_model / train_model read), ``rigidity`` (what
    accumulate_hessian reads besides the features: regulariser, reduction).
    """

    name: str = MISSING  # the config's name: results/<scale>/{features,models,hessians}/<name>/...
    module: str = MISSING  # experiments/models/<module>.py implements it
    kind: str = MISSING  # linear (descriptor + closed-form fit, CPU) | network (trained, GPU)


# ----------------------------------------------------------------------------------------------
# experiments


@dataclass
class FeaturesNeed:
    model: str = MISSING  # a linear model config (its descriptor)
    dataset: str = MISSING  # a dataset config
    kind: str = "structures"  # structures: one summed row per structure | atoms: one row per atom


@dataclass
class ModelsNeed:
    model: str = MISSING  # a model config
    dataset: str = MISSING  # the dataset it is trained on
    runs: list[str] = MISSING  # run keys (README): the training sets and seeds, one trained model each


@dataclass
class HessianNeed:
    model: str = MISSING  # a model config (its descriptor, or the trained network of the run)
    dataset: str = MISSING  # the dataset whose rows build H
    rows: str = MISSING  # run key of the rows (for a network: its run)


@dataclass
class TrajectoriesNeed:
    md: str = MISSING  # an MD protocol (config/md/)
    model: str = MISSING  # a network config
    dataset: str = MISSING  # the dataset the model was trained on (and whose first frame starts the MD)
    runs: list[str] = MISSING  # one trajectory per run


@dataclass
class ExperimentConfig:
    """Fields every experiment has; its module's ``Settings`` adds the experiment's own."""

    name: str = MISSING  # experiment id: results/<scale>/{tables,figures}/<name>.*
    figure: int = MISSING  # paper figure number: rules analyse_fig<N>, plot_fig<N>
    datasets: list[str] = field(default_factory=list)  # datasets the analysis reads directly
    features: list[FeaturesNeed] = field(default_factory=list)  # descriptor features it reads
    models: list[ModelsNeed] = field(default_factory=list)  # trained models it reads
    hessians: list[HessianNeed] = field(default_factory=list)  # Hessians (map-reduce over shards) it reads
    trajectories: list[TrajectoriesNeed] = field(default_factory=list)  # MD trajectories it reads


# ----------------------------------------------------------------------------------------------
# discovery and registration


def names(group: str) -> list[str]:
    """The config names of a group: the stems of config/<group>/*.yaml."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def model_module(module: str):
    """experiments/models/<module>.py."""
    path = REPOSITORY / "experiments" / "models" / f"{module}.py"
    if not path.is_file():
        raise ValueError(f"model module {module!r}: no file {path.relative_to(REPOSITORY)}")
    return importlib.import_module(f"experiments.models.{module}")


def experiment_module(name: str):
    """experiments/<name>.py, the module of config/experiment/<name>.yaml."""
    path = REPOSITORY / "experiments" / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"experiment {name!r}: config/experiment/{name}.yaml has no module "
                         f"{path.relative_to(REPOSITORY)}")
    return importlib.import_module(f"experiments.{name}")


_REGISTERED = False


def register() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from hydra.core.config_store import ConfigStore

    from .md import MDConfig

    cs = ConfigStore.instance()
    cs.store(name="main_schema", node=MainConfig)
    cs.store(group="schema", name="scale", node=ScaleConfig)
    cs.store(group="schema", name="dataset", node=DatasetConfig)
    cs.store(group="schema", name="md", node=MDConfig)
    for path in sorted((REPOSITORY / "experiments" / "models").glob("*.py")):
        if path.stem.startswith("_"):
            continue
        module = model_module(path.stem)
        if hasattr(module, "Config"):
            cs.store(group="schema/model", name=path.stem, node=module.Config)
    for name in names("experiment"):
        cs.store(group="schema/experiment", name=name, node=experiment_module(name).Settings)
    _REGISTERED = True


_INITIALISED: list = []  # the Hydra initialisation compose() made and keeps (one per process)


def compose(overrides: list[str] | tuple[str, ...] = (), config_dir: str | Path | None = None) -> DictConfig:
    """The config a stage entry point sees for these command-line overrides (``config_dir``: another config tree)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register()
    config_dir = str(config_dir or CONFIG_DIR)
    hydra = GlobalHydra.instance()
    if not (hydra.is_initialized() and _INITIALISED and _INITIALISED[0] is hydra.hydra
            and _INITIALISED[1] == config_dir):
        if hydra.is_initialized():
            hydra.clear()
        initialize_config_dir(config_dir=config_dir, version_base="1.3")  # initialises on construction
        _INITIALISED[:] = [hydra.hydra, config_dir]
    cfg = hydra_compose(config_name="main", overrides=list(overrides))
    for group in ("dataset", "model", "md", "experiment"):
        _check_keys(cfg.get(group), group)
    return cfg


def _check_keys(node: Any, where: str) -> None:
    """Refuse keys a schema does not have: ``+key=value`` on the command line adds them past Hydra's checks."""
    import dataclasses

    if not OmegaConf.is_dict(node):
        return
    kind = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(kind):
        return
    fields = {f.name for f in dataclasses.fields(kind)}
    for key in node.keys():
        if key not in fields:
            raise ValueError(f"{where}.{key} is not a key of {kind.__module__}.{kind.__qualname__} "
                             f"(its keys: {sorted(fields)}); was it added with '+' on the command line?")
        _check_keys(node._get_node(key), f"{where}.{key}")


def to_plain(node: Any) -> Any:
    """A config node as plain Python (dicts, lists, scalars), interpolations resolved."""
    if node is None:
        return None
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node
