# Stage 3b, MD: one trajectory per (MD protocol, network, dataset, run), a GPU on a cluster (profiles/slurm).


rule run_md:
    input:
        unpack(get_md_inputs),
    output:
        trajectory=f"{RESULTS}/trajectories/{{md}}/{{model}}/{{dataset}}/{{run}}/trajectory.extxyz",
    log:
        f"{RESULTS}/logs/trajectories/{{md}}/{{model}}/{{dataset}}/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/trajectories/{{md}}/{{model}}/{{dataset}}/{{run}}.tsv",
    wildcard_constraints:
        model=NETWORK_MODELS,
    params:
        config=get_md_digest,
        code=get_md_code,
        inputs=get_stage_inputs,
        overrides=get_md_overrides,
    shell:
        f"{THREADS} {PYTHON} -m experiments.md md={{wildcards.md}} model={{wildcards.model}} "
        f"dataset={{wildcards.dataset}} run={{wildcards.run}} scale={SCALE} inputs={{params.inputs}} "
        "output={output.trajectory} {params.overrides} > {log} 2>&1"
