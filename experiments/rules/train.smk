# Stage 2b, trained models keyed by (model, dataset, run): results/<scale>/models/<model>/<dataset>/<run>/.
# fit_model: linear models, a closed-form fit on their features (CPU); train_model: networks, trained by their own
# package (a GPU on a cluster: profiles/slurm). Both run experiments/train.py; the model config's kind picks the rule.


rule fit_model:
    input:
        unpack(get_fit_inputs),
    output:
        model=f"{RESULTS}/models/{{model}}/{{dataset}}/{{run}}/model.npz",
    log:
        f"{RESULTS}/logs/models/{{model}}/{{dataset}}/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/models/{{model}}/{{dataset}}/{{run}}.tsv",
    wildcard_constraints:
        model=LINEAR_MODELS,
    params:
        config=get_train_digest,
        code=get_train_code,
        inputs=get_stage_inputs,
        overrides=get_model_overrides,
    shell:
        f"{THREADS} {PYTHON} -m experiments.train model={{wildcards.model}} dataset={{wildcards.dataset}} "
        f"run={{wildcards.run}} scale={SCALE} inputs={{params.inputs}} output={{output.model}} "
        "{params.overrides} > {log} 2>&1"


rule train_model:
    input:
        unpack(get_train_inputs),
    output:
        model=f"{RESULTS}/models/{{model}}/{{dataset}}/{{run}}/manifest.json",
    log:
        f"{RESULTS}/logs/models/{{model}}/{{dataset}}/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/models/{{model}}/{{dataset}}/{{run}}.tsv",
    wildcard_constraints:
        model=NETWORK_MODELS,
    params:
        config=get_train_digest,
        code=get_train_code,
        inputs=get_stage_inputs,
        overrides=get_model_overrides,
    shell:
        f"{THREADS} {PYTHON} -m experiments.train model={{wildcards.model}} dataset={{wildcards.dataset}} "
        f"run={{wildcards.run}} scale={SCALE} inputs={{params.inputs}} output={{output.model}} "
        "{params.overrides} > {log} 2>&1"
