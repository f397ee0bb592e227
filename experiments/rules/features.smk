# Stage 2a, descriptor features of a linear model on one dataset (one job per model, dataset and kind).


rule compute_features:
    input:
        unpack(get_data_input),
    output:
        features=f"{RESULTS}/features/{{model}}/{{dataset}}/{{kind}}.npz",
    log:
        f"{RESULTS}/logs/features/{{model}}/{{dataset}}/{{kind}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features/{{model}}/{{dataset}}/{{kind}}.tsv",
    wildcard_constraints:
        model=LINEAR_MODELS,
    params:
        config=get_features_digest,
        code=get_features_code,
        inputs=get_stage_inputs,
        overrides=get_model_overrides,
    shell:
        f"{THREADS} {PYTHON} -m experiments.features model={{wildcards.model}} dataset={{wildcards.dataset}} "
        f"kind={{wildcards.kind}} scale={SCALE} inputs={{params.inputs}} output={{output.features}} "
        "{params.overrides} > {log} 2>&1"
