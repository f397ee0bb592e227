# Stage 3, rigidity analyses: PR / LPR / CPR, selections and embeddings into result tables.


rule compute_rigidities:
    input:
        models=f"{RESULTS}/models/{{experiment}}/manifest.json",
        data=get_experiment_datasets,
    output:
        f"{RESULTS}/tables/{{experiment}}.csv",
    log:
        f"{RESULTS}/logs/rigidity/{{experiment}}.log",
    conda:
        "../../environment.yml"
    params:
        python=PYTHON,
        scale=SCALE,
        inputs=get_hydra_inputs,
    shell:
        "{params.python} -m experiments.rigidity experiment={wildcards.experiment} scale={params.scale} "
        "inputs={params.inputs} output={output} > {log} 2>&1"
