"""``rigidity-llpr``: per-atom LPR, PR and calibrated energy uncertainties of a trained model, from the shell.

    rigidity-llpr --model my.model --train train.xyz --valid valid.xyz \\
        --structures big.xyz --output big_lpr.xyz [--chemiscope big.json.gz]

The model is a mace-torch model file (``torch.save`` of a MACE / ScaleShiftMACE, what
``mace_run_train`` writes), a schnetpack model file (``best_model``) or an exported
metatomic model (``mtt export``). The output is the structures with ``arrays["lpr"]``
per atom and ``info["pr"]``, ``info["energy_uncertainty"]`` (eV) and
``info["model_energy"]`` per structure. Every input is checked before anything is
computed, and outputs are written to a temporary name and renamed: a failed run
writes nothing.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._llpr import LLPR, PAPER_REGULARIZER


class InputError(ValueError):
    """A bad input of the command line: printed as one line, exit status 2."""


def _existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} {path} is a directory, expected a file")
    if not p.is_file():
        raise InputError(f"{what} {path} does not exist")
    return p


def read_structures(path: str, what: str) -> list:
    from ase.io import read

    p = _existing_file(path, what)
    if p.stat().st_size == 0:
        raise InputError(f"{what} {path} is empty: it holds no structures")
    try:
        frames = read(p, index=":")
    except Exception as err:  # ASE raises many kinds for malformed files
        raise InputError(f"{what} {path} could not be read as structures: {type(err).__name__}: {err}") from err
    if not frames:
        raise InputError(f"{what} {path} holds no structures")
    for k, atoms in enumerate(frames):
        if len(atoms) == 0:
            raise InputError(f"{what} {path}: structure {k} has no atoms")
    return frames


def _torch_load(path: Path):
    try:
        import mace  # noqa: F401  (mace's import makes pickled mace models loadable alongside e3nn)
    except ImportError:
        pass
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def load_last_layer(path: str, head: str | None = None, device: str | None = None):
    """The adapter for the model in a file: mace-torch, schnetpack or metatomic; a clear error for anything else."""
    p = _existing_file(path, "model file")
    supported = ("a mace-torch MACE model (torch.save / mace_run_train), a schnetpack NeuralNetworkPotential "
                 "or an exported metatomic model (mtt export)")
    def metatomic(reason):
        try:
            from ._metatomic import MetatomicLastLayer
        except ImportError:
            raise InputError(f"model file {path} is not a model this command reads ({supported}): {reason}") from None
        try:
            return MetatomicLastLayer(str(p), device=device)
        except Exception as err:
            raise InputError(f"model file {path} is not a model this command reads ({supported}): {reason}; as a "
                             f"metatomic model: {type(err).__name__}: {str(err).splitlines()[0][:200]}") from None

    if p.suffix == ".ckpt":  # a metatrain checkpoint
        return metatomic("a .ckpt file is read as a metatrain checkpoint")
    if _is_torchscript(p):  # exported metatomic models are TorchScript archives
        return metatomic("a TorchScript archive is read as an exported metatomic model")
    try:
        obj = _torch_load(p)
    except Exception as pickle_error:  # an exported (TorchScript) metatomic model is not a pickle
        return metatomic(f"{type(pickle_error).__name__}: {str(pickle_error).splitlines()[0][:200]}")
    if isinstance(obj, dict) and "architecture_name" in obj:  # a metatrain checkpoint under another name
        return metatomic("a metatrain checkpoint")
    try:
        if hasattr(obj, "readouts") and hasattr(obj, "atomic_energies_fn"):
            from ._mace import MACELastLayer

            return MACELastLayer(obj.double() if _is_float32(obj) else obj, head=head, device=device)
        if type(obj).__name__ == "NeuralNetworkPotential" and type(obj).__module__.startswith("schnetpack"):
            from ._painn import PaiNNLastLayer

            return PaiNNLastLayer(obj.double() if _is_float32(obj) else obj, device=device)
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as err:
        raise InputError(f"model file {path} holds a {type(obj).__name__} this command cannot read: {err}") from None
    raise InputError(f"model file {path} holds a {type(obj).__module__}.{type(obj).__name__}, expected {supported}")


def _is_torchscript(path: Path) -> bool:
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/", 2)[1:2] == ["code"] for name in archive.namelist())


def _is_float32(model) -> bool:
    import torch

    return any(p.dtype == torch.float32 for p in model.parameters())


def _check_elements(ll, frames, path: str, what: str, train=None):
    """Elements the model knows: its own list where the adapter has one, else those of the training set."""
    known = getattr(ll, "atomic_numbers", None)
    if known is None:
        if train is None:
            return
        known = set(int(z) for atoms in train for z in atoms.numbers)
    known = set(int(z) for z in known)
    for k, atoms in enumerate(frames):
        unknown = sorted(set(int(z) for z in atoms.numbers) - known)
        if unknown:
            from ase.data import chemical_symbols

            names = [chemical_symbols[z] for z in unknown]
            raise InputError(f"{what} {path}: structure {k} ({atoms.get_chemical_formula()}) has elements {names} "
                             f"the model does not know (it knows {[chemical_symbols[z] for z in sorted(known)]})")


def _check_labels(frames, key: str, path: str, what: str):
    for k, atoms in enumerate(frames):
        # a calculator's energy stands in only for the default key, as in LLPR
        has = key in atoms.info or (key == "energy" and atoms.calc is not None
                                    and "energy" in getattr(atoms.calc, "results", {}))
        if not has:
            raise InputError(f"{what} {path}: structure {k} has no reference energy (info[{key!r}]) to calibrate "
                             "against")


def _temporary(path: Path) -> Path:
    # the same suffixes as the target, so that writers choosing a format by name (chemiscope) agree
    return path.with_name(f".{secrets.token_hex(4)}.tmp.{path.name}")


def _chemiscope(frames, path: Path):
    import chemiscope

    properties = {
        "lpr": {"target": "atom", "values": np.concatenate([a.arrays["lpr"] for a in frames]),
                "description": "local prediction rigidity of each atom (1/eV^2)"},
        "log10_lpr": {"target": "atom", "values": np.log10(np.concatenate([a.arrays["lpr"] for a in frames])),
                      "description": "log10 of the LPR"},
        "energy_uncertainty": {"target": "structure", "values": np.array([a.info["energy_uncertainty"]
                                                                          for a in frames]),
                               "units": "eV"},
        "pr": {"target": "structure", "values": np.array([a.info["pr"] for a in frames])},
    }
    bare = [a.copy() for a in frames]
    for a in bare:
        a.info, a.arrays = {}, {k: v for k, v in a.arrays.items() if k in ("numbers", "positions")}
    chemiscope.write_input(str(path), structures=bare, properties=properties,
                           environments=chemiscope.all_atomic_environments(bare),
                           meta={"name": "last-layer prediction rigidities (rigidity-llpr)"},
                           settings={"structure": [{"color": {"property": "log10_lpr"}}]})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rigidity-llpr", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", required=True, help="trained model file (mace-torch, schnetpack or metatomic)")
    p.add_argument("--train", required=True, help="training structures (any ASE format, e.g. extxyz)")
    p.add_argument("--valid", help="validation structures with reference energies, to calibrate the uncertainty")
    p.add_argument("--structures", required=True, help="structures to analyse")
    p.add_argument("--output", required=True, help="output extxyz: structures with lpr, pr, energy_uncertainty")
    p.add_argument("--chemiscope", help="also write a chemiscope file (.json or .json.gz) coloured by LPR")
    p.add_argument("--regularizer", type=float, default=PAPER_REGULARIZER, help="sigma^2 on the diagonal of H")
    p.add_argument("--energy-weight", type=float, default=1.0, help="energy loss weight of the training")
    p.add_argument("--force-weight", type=float, default=0.0, help="force loss weight (0: no force rows)")
    p.add_argument("--stress-weight", type=float, default=0.0, help="stress loss weight (periodic structures)")
    p.add_argument("--reduction", choices=["sum", "mean"], default="sum",
                   help="the loss: a sum over targets (the paper's eq. 5) or each term's mean (mace-torch, "
                        "schnetpack, metatrain)")
    p.add_argument("--per-atom-energy", action="store_true",
                   help="the model was trained on energies per atom (mace-torch's weighted loss)")
    p.add_argument("--loss", choices=["mse", "huber"], default="mse", help="the training loss")
    p.add_argument("--huber-delta", type=float, default=0.01, help="Huber width (mace-torch's default)")
    p.add_argument("--energy-key", default="energy", help="info key of reference energies")
    p.add_argument("--forces-key", default="forces", help="arrays key of reference forces (Huber loss)")
    p.add_argument("--min-valid", type=int, default=5, help="fewest validation structures to calibrate on")
    p.add_argument("--head", help="head of a multi-head MACE model")
    p.add_argument("--device", default=None, help="torch device (default: the model's)")
    p.add_argument("--batch-size", type=int, default=16, help="structures per model pass")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _check_output(path: str, what: str) -> Path:
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{what} {path} is a directory, expected a file name")
    if not p.parent.is_dir():
        raise InputError(f"the folder of {what} {path} does not exist")
    return p


def run(args: argparse.Namespace, out=None) -> dict[str, Any]:
    output = _check_output(args.output, "output")
    scope = None
    if args.chemiscope:
        scope = _check_output(args.chemiscope, "chemiscope file")
        if not (scope.name.endswith(".json") or scope.name.endswith(".json.gz")):
            raise InputError(f"chemiscope file {args.chemiscope} must end in .json or .json.gz")
        try:
            import chemiscope  # noqa: F401
        except ImportError:
            raise InputError("--chemiscope needs the chemiscope package (pip install chemiscope)") from None
    if args.min_valid < 1:
        raise InputError(f"--min-valid must be at least 1, got {args.min_valid}")
    ll = load_last_layer(args.model, head=args.head, device=args.device)
    train = read_structures(args.train, "training file")
    valid = read_structures(args.valid, "validation file") if args.valid else None
    structures = read_structures(args.structures, "structures file")
    for frames, path, what in ((train, args.train, "training file"), (valid, args.valid, "validation file"),
                               (structures, args.structures, "structures file")):
        if frames is not None:
            _check_elements(ll, frames, path, what, train=None if frames is train else train)
    if valid is not None:
        if len(valid) < args.min_valid:
            raise InputError(f"validation file {args.valid} holds {len(valid)} structure(s): at least "
                             f"{args.min_valid} are needed to calibrate (--min-valid)")
        _check_labels(valid, args.energy_key, args.valid, "validation file")
    try:
        llpr = LLPR(ll, regularizer=args.regularizer, energy_weight=args.energy_weight,
                    force_weight=args.force_weight, stress_weight=args.stress_weight,
                    per_atom_energy=args.per_atom_energy, reduction=args.reduction, loss=args.loss,
                    huber_delta=args.huber_delta,
                    energy_key=args.energy_key, forces_key=args.forces_key, batch_size=args.batch_size,
                    progress=not args.quiet)
    except (TypeError, ValueError) as err:
        raise InputError(str(err)) from None
    llpr.fit(train)
    alpha = llpr.calibrate(valid, min_structures=args.min_valid) if valid is not None else None
    p = llpr.predict(structures)
    result = []
    for s, atoms in enumerate(structures):
        labels = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
        atoms = atoms.copy()
        for key, value in labels.items():  # the input's labels (ASE reads extxyz energies into a calculator)
            value = np.asarray(value)
            if value.ndim and value.shape[0] == len(atoms) and key not in atoms.arrays:
                atoms.arrays[key] = value
            elif key not in atoms.info and key not in atoms.arrays:
                atoms.info[key] = value.item() if value.ndim == 0 else value
        atoms.calc = None
        atoms.arrays["lpr"] = p["lpr"][p["structure"] == s]
        atoms.info["pr"] = float(p["pr"][s])
        atoms.info["energy_uncertainty"] = float(p["energy_uncertainty"][s])
        atoms.info["model_energy"] = float(p["energy"][s])
        atoms.info["rigidity_calibrated"] = alpha is not None
        result.append(atoms)

    from ase.io import write

    # both files under temporary names first, renamed only when both are written: all or nothing
    temporaries = [(_temporary(output), output)] + ([(_temporary(scope), scope)] if scope is not None else [])
    try:
        write(temporaries[0][0], result, format="extxyz")
        if scope is not None:
            _chemiscope(result, temporaries[1][0])
        for tmp, final in temporaries:
            os.replace(tmp, final)
    finally:
        for tmp, _ in temporaries:
            if tmp.exists():
                tmp.unlink()
    lpr = p["lpr"]
    worst = np.argsort(lpr)[:5]
    lines = [
        f"model: {type(ll).__name__}, {ll.n_features} last-layer features; H from {len(train)} training structures "
        f"({args.reduction} loss, energy weight {args.energy_weight:g}, force weight {args.force_weight:g}"
        f"{', per-atom energies' if args.per_atom_energy else ''}, {args.loss}), regularizer {args.regularizer:g}",
        (f"calibrated on {len(valid)} validation structures: alpha = {alpha:.4g}" if alpha is not None
         else "not calibrated (no --valid): energy_uncertainty is sqrt(1/PR), in the units of the loss"),
        f"{len(structures)} structures, {len(lpr)} atoms -> {args.output}",
        f"  PR: min {p['pr'].min():.3g}, median {np.median(p['pr']):.3g}, max {p['pr'].max():.3g}",
        f"  energy uncertainty (eV): min {p['energy_uncertainty'].min():.3g}, "
        f"median {np.median(p['energy_uncertainty']):.3g}, max {p['energy_uncertainty'].max():.3g}",
        f"  LPR: min {lpr.min():.3g}, median {np.median(lpr):.3g}; least rigid atoms (structure, atom): "
        + ", ".join(f"({int(p['structure'][i])}, {int(i - np.flatnonzero(p['structure'] == p['structure'][i])[0])})"
                    for i in worst),
    ]
    if args.chemiscope:
        lines.append(f"chemiscope file -> {args.chemiscope}")
    print("\n".join(lines), file=sys.stdout if out is None else out)
    return dict(llpr=llpr, prediction=p, alpha=alpha)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except InputError as err:
        print(f"rigidity-llpr: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # an adapter's or the library's refusal, e.g. elements it does not know
        print(f"rigidity-llpr: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
