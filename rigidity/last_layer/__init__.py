r"""Last-layer features of trained neural-network potentials, as the models come.

A potential whose energy is linear in its last layer,

.. math::

    E_s = \sum_{i \in s} \left( \boldsymbol\phi_i \cdot \mathbf w + c_i \right),

has the Gauss-Newton Hessian of the paper's eq. 5-6 in those weights: the rows g
are the structure sums (or means) of the per-atom features :math:`\boldsymbol\phi_i`
for energies, and their derivatives with respect to the positions for forces
(eq. 6-8). An adapter reads :math:`\boldsymbol\phi_i`, :math:`\mathbf w` and
:math:`c_i` out of an unmodified model, through forward hooks or the model's own
outputs, and every adapter keeps one contract (:class:`LastLayer`):

- ``ll.features(frames)`` -> ``(phi, structure)``: (n_atoms, d) features and the
  structure of each atom, for a list of ``ase.Atoms``;
- ``ll.weights``: the (d,) readout vector; ``ll.constants(frames)``: the (n_atoms,)
  per-atom constants (reference energies, scale/shift, repulsion terms);
- ``ll.force_rows(frames)`` -> ``(rows, structure)``: (3 n_atoms, d) rows
  :math:`-\partial \Phi_s / \partial r_{a\alpha}` of the summed (or averaged)
  features, the force rows of eq. 6, atom by atom and x, y, z;
- ``ll.blocks``: named column blocks of phi (e.g. one per readout layer), for ``cpr``.

Adapters import their package only when used:

- :class:`MACELastLayer` for mace-torch ``MACE`` / ``ScaleShiftMACE`` models;
- :class:`PaiNNLastLayer` for schnetpack ``NeuralNetworkPotential`` models (PaiNN
  representation, ``Atomwise`` energy, their postprocessors);
- :class:`MetatomicLastLayer` for metatomic models exporting
  ``mtt::aux::energy_last_layer_features`` (metatrain's SOAP-BPNN), exported (``.pt``)
  or as metatrain checkpoints (``.ckpt``).

On top of any adapter: :class:`LLPR` (H over a training set; PR, LPR, CPR per block,
calibrated uncertainties), :class:`RigidityCalculator` (an ASE calculator reporting them
at every MD step) and the ``rigidity-llpr`` command line (:mod:`rigidity.last_layer.cli`).
"""

from __future__ import annotations

from ._base import LastLayer
from ._llpr import LLPR, PAPER_REGULARIZER, model_identity

__all__ = ["LastLayer", "LLPR", "PAPER_REGULARIZER", "model_identity", "MACELastLayer", "PaiNNLastLayer",
           "MetatomicLastLayer", "RigidityCalculator"]


def __getattr__(name):
    if name == "MACELastLayer":
        from ._mace import MACELastLayer

        return MACELastLayer
    if name == "PaiNNLastLayer":
        from ._painn import PaiNNLastLayer

        return PaiNNLastLayer
    if name == "RigidityCalculator":
        from ._calculator import RigidityCalculator

        return RigidityCalculator
    if name == "MetatomicLastLayer":
        from ._metatomic import MetatomicLastLayer

        return MetatomicLastLayer
    raise AttributeError(f"module 'rigidity.last_layer' has no attribute {name!r}")
