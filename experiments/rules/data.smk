# Stage 1, data: one extxyz per dataset (download | file | generate, see config/dataset/).


rule prepare_dataset:
    input:
        unpack(get_dataset_source),
    # before any other job that is ready: the datasets are the roots, and the slowest (carbon, Si clusters) is the
    # critical path of `make figures`, while the networks of a dataset made earlier would otherwise take both cores
    priority: 10
    output:
        data=f"{RESULTS}/data/{{dataset}}.extxyz",
    log:
        f"{RESULTS}/logs/data/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/{{dataset}}.tsv",
    params:
        config=get_dataset_digest,
        code=get_dataset_code,
        overrides=get_dataset_overrides,
    shell:
        f"{THREADS} {PYTHON} -m experiments.data dataset={{wildcards.dataset}} scale={SCALE} "
        "output={output.data} {params.overrides} > {log} 2>&1"
