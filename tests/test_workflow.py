"""The Snakemake workflow parses, lints clean and builds its DAG."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or shutil.which("snakemake")

pytestmark = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")


def _snakemake(*args, cwd=ROOT):
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_dry_run_builds_the_dag(tmp_path):
    out = _snakemake("-n", "--config", f"results={tmp_path}/results")
    assert out.returncode == 0, out.stderr
    assert "dry-run" in out.stdout + out.stderr


def test_lint_reports_nothing():
    out = _snakemake("--lint")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "good condition" in out.stdout + out.stderr


def test_unknown_scale_is_refused():
    out = _snakemake("-n", "--config", "scale=huge")
    assert out.returncode != 0
    assert "scale='huge' is not one of" in out.stdout + out.stderr
