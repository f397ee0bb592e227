"""The pinned environment holds every package the workflow needs, at the pinned versions."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# These tests check the environment `make install` builds (.venv, every extra, the pins); in any other
# environment (a user's own, with only some extras) they do not apply.
pytestmark = pytest.mark.skipif(
    Path(sys.prefix).resolve() != (ROOT / ".venv").resolve() or not (ROOT / ".venv" / ".installed").is_file(),
    reason="not the environment `make install` builds in .venv (the pins are checked there)",
)


def _pins():
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    return pins


@pytest.mark.parametrize(
    "dist, module",
    [
        ("torch", "torch"),
        ("numpy", "numpy"),
        ("scipy", "scipy"),
        ("ase", "ase"),
        ("mace-torch", "mace"),
        ("schnetpack", "schnetpack"),
        ("snakemake", "snakemake"),
        ("snakemake-executor-plugin-slurm", "snakemake_executor_plugin_slurm"),
        ("hydra-core", "hydra"),
        ("featomic", "featomic"),
        ("featomic-torch", "featomic.torch"),
        ("tblite", "tblite.interface"),
        ("matscipy", "matscipy"),
        ("openmm", "openmm"),
        ("matplotlib", "matplotlib"),
        ("tqdm", "tqdm"),
        ("pytest", "pytest"),
    ],
)
def test_package_imports_at_its_pinned_version(dist, module):
    from importlib.metadata import version

    importlib.import_module(module)
    assert version(dist) == _pins()[dist]


def test_torch_is_the_cpu_build():
    import torch

    assert torch.__version__ == _pins()["torch"] == "2.13.0+cpu"


def test_e3nn_imports_alone_with_the_compat_shim():
    # e3nn on its own fails under torch's weights_only default; the shim fixes exactly that
    code = "import experiments._torch_compat as c; c.allow_e3nn_import(); import e3nn.o3; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


def test_schnetpack_model_checkpoint_round_trip(tmp_path):
    import schnetpack as spk
    import torch

    from experiments._torch_compat import load_trusted_checkpoint

    model = spk.representation.PaiNN(
        n_atom_basis=8, n_interactions=1, radial_basis=spk.nn.GaussianRBF(n_rbf=4, cutoff=3.0),
        cutoff_fn=spk.nn.CosineCutoff(3.0),
    )
    path = tmp_path / "painn.pt"
    torch.save(model, path)
    with pytest.raises(Exception, match="weights_only"):  # torch's default since 2.6
        torch.load(path, weights_only=True)
    loaded = load_trusted_checkpoint(path)
    for a, b in zip(model.parameters(), loaded.parameters()):
        assert torch.equal(a, b)
