# Stage 1, data: one extxyz per dataset (download | file | generate, see config/dataset/).


rule prepare_dataset:
    output:
        f"{RESULTS}/data/{{dataset}}.extxyz",
    log:
        f"{RESULTS}/logs/data/{{dataset}}.log",
    conda:
        "../../environment.yml"
    params:
        python=PYTHON,
        scale=SCALE,
        overrides=get_dataset_overrides,
    shell:
        "{params.python} -m experiments.data dataset={wildcards.dataset} scale={params.scale} "
        "output={output} {params.overrides} > {log} 2>&1"
