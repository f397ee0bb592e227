"""The SLURM path for real (tier workflow, marked slurm): the smoke scale through profiles/slurm on a one-node cluster.

CI starts the cluster with .ci/slurm-up (Debian's slurmctld, slurmd and munge, installed as root with apt-get,
one node, one `cpu` partition, no accounting). Without a controller that answers, the test skips and says how to
get one. The profile is used as a cluster user would, with its partitions and sizes overridden for the one small
node, and with the two flags a cluster without accounting needs (the plugin's default status command is sacct).
"""

import os
import re
import shutil
import subprocess

import pytest
from test_workflow import MISSING, ROOT, SNAKEMAKE, TREE

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def slurm_controller() -> str | None:
    """Why SLURM cannot be used here, or None when a controller answers and a node is up."""
    if shutil.which("scontrol") is None or shutil.which("sbatch") is None:
        return "SLURM is not installed"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30)
    if ping.returncode != 0 or "UP" not in ping.stdout:
        return f"no SLURM controller answers `scontrol ping` ({ping.stdout.strip() or ping.stderr.strip()})"
    nodes = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30).stdout.split()
    if not {"idle", "mix", "alloc"} & set(nodes):
        return f"no SLURM node is up (sinfo: {nodes})"
    return None


@pytest.fixture(scope="module")
def cluster():
    why = slurm_controller()
    if why:
        pytest.skip(f"{why}: as root on Debian, `.ci/slurm-up` installs and starts a one-node cluster "
                    "(`.ci/run` does it for CI)")
    if SNAKEMAKE is None:
        pytest.skip("snakemake is not installed")
    if MISSING:
        pytest.skip(f"running the stages needs {MISSING} (the models extra)")


def test_smoke_scale_runs_through_the_slurm_profile(cluster, tmp_path):
    work = tmp_path / "workflow"
    work.mkdir()
    for name in TREE:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__", "raw"))
        else:
            shutil.copy2(src, work / name)
    small = ["prepare_dataset", "compute_features", "fit_model", "accumulate_hessian", "analyse_fig5"]
    args = [
        "--profile", "profiles/slurm", "--config", "scale=smoke", "--jobs", "4", "--latency-wait", "5",
        # the one node of the test cluster: partition cpu, 2 cores, a few GB per job
        "--default-resources", "slurm_partition=cpu", "slurm_account=ci", "runtime=30", "mem_mb=2000",
        "cpus_per_task=1",
        "--set-threads", "prepare_dataset=1", "compute_features=1",
        "--set-resources", *[f"{rule}:cpus_per_task=1" for rule in small], *[f"{rule}:mem_mb=2000" for rule in small],
        # no accounting on the test cluster: squeue, not sacct, reports job states; poll every 2 s
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "2",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([SNAKEMAKE, *args], cwd=work, capture_output=True, text=True, timeout=1500, env=env)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    text = out.stdout + out.stderr
    steps = int(re.search(r"(\d+) of \1 steps \(100%\) done", text).group(1))
    submitted = len(re.findall(r"has been submitted with SLURM jobid \d+", text))
    assert submitted == steps - 1  # every job but the target rule `all` went through sbatch
    assert re.findall(r"^localrule (\w+):", text, re.M) == ["all"]
    results = work / "results" / "smoke"
    for name in ("fig4_pr_augmentation", "fig5_active_learning", "fig6_body_order", "fig7_range_separation"):
        assert (results / "figures" / f"{name}.pdf").stat().st_size > 1000
        assert (results / "tables" / f"{name}.csv").read_text().startswith("scale,reference_method,")
