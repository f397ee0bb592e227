"""Configs (tier config): every config composes at every scale, is typed, and keeps Hydra's precedence."""

import shutil
from pathlib import Path

import pytest
from conftest import compose
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from experiments.config import CONFIG_DIR, SCALES, names
from experiments.config import compose as compose_in

EXPERIMENTS, MODELS, DATASETS = names("experiment"), names("model"), names("dataset")


def error_text(err: BaseException) -> str:
    """The message and its causes, as Hydra prints them."""
    parts = []
    while err is not None:
        parts.append(str(err))
        err = err.__cause__ or err.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_names_known_units(experiment, scale):
    cfg = compose([f"experiment={experiment}", f"scale={scale}"])
    s = cfg.experiment
    assert s.name == experiment and cfg.scale.name == scale and s.figure == int(experiment[3])
    assert OmegaConf.get_type(s).__name__ == "Settings"  # typed by its module's schema
    for name in s.datasets:
        assert name in DATASETS
    for need in list(s.features) + list(s.models) + list(s.hessians):
        assert need.model in MODELS and need.dataset in DATASETS


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_composes_with_its_name_module_and_kind(model, scale):
    from experiments.config import model_module

    m = compose([f"model={model}", f"scale={scale}"]).model
    assert m.name == model  # the name is the results path: it must be the file's
    assert m.kind in ("linear", "network")
    module = model_module(m.module)
    assert OmegaConf.get_type(m) is module.Config
    if m.kind == "linear":
        assert hasattr(module, "features")


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_config_validates(dataset, scale):
    from experiments.data import dataset_config, generator_params
    from experiments.datasets import dataset_module

    ds = dataset_config(compose([f"dataset={dataset}", f"scale={scale}"]))
    assert ds.name == dataset
    assert generator_params(ds, dataset_module(dataset).Params) is not None


def test_every_sizes_file_belongs_to_a_config_and_a_scale():
    """A sizes file is optional in the defaults list: a misspelt folder or scale would be silently ignored."""
    files = sorted((CONFIG_DIR / "sizes").rglob("*.yaml"))
    assert files
    for f in files:
        group, name, scale = f.relative_to(CONFIG_DIR / "sizes").with_suffix("").parts
        assert name in names(group), f
        assert scale in SCALES, f


# ----------------------------------------------------------------------------------------------
# typed: unknown keys and wrong types fail at composition, naming the key (and the file)


@pytest.mark.parametrize("override, key", [
    ("experiment.n_pickz=3", "experiment.n_pickz"),
    ("model.descriptor.cutof=4.0", "model.descriptor.cutof"),
    ("+experiment.n_pickz=3", "experiment.n_pickz"),  # '+' adds keys past Hydra's struct check: refused after it
    ("+model.fit.alpha_max2=4", "model.fit.alpha_max2"),
])
def test_an_unknown_key_on_the_command_line_fails(override, key):
    with pytest.raises((ConfigCompositionException, ValueError)) as err:
        compose(["experiment=fig4_pr_augmentation", override])
    assert key in error_text(err.value)


@pytest.mark.parametrize("value", ["abc", "2.7", "true", "[1,2]"])
def test_a_wrong_type_on_the_command_line_fails_naming_the_key(value):
    with pytest.raises(ConfigCompositionException) as err:
        compose(["experiment=fig4_pr_augmentation", f"experiment.n_picks={value}"])
    text = error_text(err.value)
    assert "experiment.n_picks" in text


def numeric_keys(node, prefix):
    """(full key, value) of every int and float leaf of a typed node."""
    out = []
    for key in node:
        value = node[key]
        full = f"{prefix}.{key}"
        if OmegaConf.is_dict(value):
            out += numeric_keys(value, full)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append((full, value))
    return out


@pytest.mark.parametrize("group, name", [("experiment", e) for e in EXPERIMENTS] + [("model", m) for m in MODELS])
def test_every_numeric_key_refuses_a_string(group, name):
    cfg = compose([f"{group}={name}", "scale=paper"])
    keys = numeric_keys(cfg[group], group)
    assert keys or group == "experiment"
    for key, _ in keys:
        with pytest.raises(ConfigCompositionException) as err:
            compose([f"{group}={name}", "scale=paper", f"{key}=not_a_number"])
        assert key in error_text(err.value), key


@pytest.fixture
def config_copy(tmp_path):
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    yield target
    compose_in([], config_dir=CONFIG_DIR)  # back to the real tree for the other tests


@pytest.mark.parametrize("path, text, key", [
    ("experiment/fig4_pr_augmentation.yaml", "  n_pickz: 4  # a typo\n", "n_pickz"),
    ("model/ace.yaml", "  rigde_alpha: 1.0e-3  # a typo\n", "rigde_alpha"),
    ("sizes/experiment/fig4_pr_augmentation/smoke.yaml", "n_random_seedz: 2\n", "n_random_seedz"),
    ("dataset/si_nmers.yaml", "  sets_sed: 5\n", "sets_sed"),
])
def test_a_misspelt_key_in_a_yaml_file_fails_naming_the_key_and_the_file(config_copy, path, text, key):
    f = config_copy / path
    f.write_text(f.read_text() + text)
    group = path.split("/")[1] if path.startswith("sizes/") else path.split("/")[0]
    name = Path(path).parent.name if path.startswith("sizes/") else Path(path).stem
    with pytest.raises(ConfigCompositionException) as err:
        compose_in([f"{group}={name}", "scale=smoke"], config_dir=config_copy)
    text = error_text(err.value)
    assert key in text
    assert str(Path(path).with_suffix("")) in text  # Hydra names the file: "In 'experiment/fig4_pr_augmentation'"


def test_a_wrong_type_in_a_yaml_file_fails_naming_the_key_and_the_file(config_copy):
    f = config_copy / "experiment" / "fig6_body_order.yaml"
    f.write_text(f.read_text().replace("  figure: 6  # paper figure number", "  figure: six  # not a number"))
    with pytest.raises(ConfigCompositionException) as err:
        compose_in(["experiment=fig6_body_order"], config_dir=config_copy)
    text = error_text(err.value)
    assert "experiment.figure" in text and "experiment/fig6_body_order" in text


# ----------------------------------------------------------------------------------------------
# precedence: the command line wins over the per-scale sizes


def test_a_command_line_override_wins_over_the_scale():
    assert compose(["experiment=fig4_pr_augmentation", "scale=smoke"]).experiment.n_picks == 3  # the smoke size
    assert compose(["experiment=fig4_pr_augmentation", "experiment.n_picks=5", "scale=smoke"]).experiment.n_picks == 5
    assert compose(["scale=smoke", "experiment=fig4_pr_augmentation", "experiment.n_picks=5"]).experiment.n_picks == 5
    quick = compose(["experiment=fig4_pr_augmentation", "scale=quick"]).model.descriptor.E_max
    assert list(quick) == [0, 1000, 300]  # config/sizes/model/le_ace/quick.yaml
    mine = compose(["experiment=fig4_pr_augmentation", "model.descriptor.E_max=[0,500,200,100]", "scale=quick"])
    assert list(mine.model.descriptor.E_max) == [0, 500, 200, 100]
    smoke = compose(["dataset=carbon", "scale=smoke", "dataset.generate.n_atoms=32"]).dataset.generate
    assert smoke.n_atoms == 32 and smoke.melt_steps == 20  # the override, and the rest of the smoke sizes


def test_a_scale_changes_only_what_its_files_say():
    paper = compose(["model=ace", "scale=paper"]).model
    smoke = compose(["model=ace", "scale=smoke"]).model
    assert (list(paper.descriptor.total_degree) == [24, 20, 16, 12]
            and list(smoke.descriptor.total_degree) == [10, 8, 7, 6])
    assert OmegaConf.to_container(paper.fit) == OmegaConf.to_container(smoke.fit)
    # a derived config takes the sizes of its own name (ace_purified's smoke file includes ace's)
    assert list(compose(["model=ace_purified", "scale=smoke"]).model.descriptor.total_degree) == [10, 8, 7, 6]
    assert compose(["model=ace_purified"]).model.descriptor.purified is True
