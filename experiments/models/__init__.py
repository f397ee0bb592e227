"""One module per model: its config schema and what the workflow's stages call.

``config/model/<name>.yaml`` names its module (``module: <module>``) and its kind:

- ``kind: linear`` (a descriptor and a closed-form fit, on CPU). The module defines
  ``Config`` (the schema: ``descriptor``, ``fit`` and ``rigidity`` sections),
  ``features(model, frames, kind) -> FeatureSet`` (rule compute_features),
  ``fit(model, frames, features, rows) -> TrainedModel`` (rule fit_model) where it
  has a fit of its own, and ``hessian_rows(model, frames) -> (n, d) array``
  (rule accumulate_hessian) where a figure builds H from it.
- ``kind: network`` (trained by its own package, on a GPU at paper scale). The
  module defines ``Config`` and ``train(model, frames, rows, run, cfg)`` (rule
  train_model: the parsed run key and the composed config, output path included);
  ``mace``, ``painn`` and ``soap_bpnn`` train with mace_run_train, schnetpack's
  AtomisticTask and metatrain's train_model, and write a ``manifest.json`` beside the model.

``model`` is always the composed config node converted to its dataclass
(``OmegaConf.to_object``), so attribute access is typed. Adding a model means adding
its config and its module here; nothing else is registered.
"""
