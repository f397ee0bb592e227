# Stage 2, training and features: the expensive step of each experiment (models, descriptors).


rule train_models:
    input:
        get_experiment_datasets,
    output:
        f"{RESULTS}/models/{{experiment}}/manifest.json",
    log:
        f"{RESULTS}/logs/train/{{experiment}}.log",
    conda:
        "../../environment.yml"
    params:
        python=PYTHON,
        scale=SCALE,
        inputs=get_hydra_inputs,
    shell:
        "{params.python} -m experiments.train experiment={wildcards.experiment} scale={params.scale} "
        "inputs={params.inputs} output={output} > {log} 2>&1"
