# Stage 3a, H as map-reduce: scale.hessian_shards accumulate_hessian jobs over the rows a run key selects, one merge.


rule accumulate_hessian:
    input:
        unpack(get_shard_inputs),
    output:
        shard=f"{RESULTS}/hessians/{{model}}/{{dataset}}/{{rows}}/shard{{shard}}of{{n_shards}}.npz",
    log:
        f"{RESULTS}/logs/hessians/{{model}}/{{dataset}}/{{rows}}/shard{{shard}}of{{n_shards}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/hessians/{{model}}/{{dataset}}/{{rows}}/shard{{shard}}of{{n_shards}}.tsv",
    params:
        config=get_hessian_digest,
        code=get_hessian_code,
        inputs=get_stage_inputs,
        overrides=get_model_overrides,
    shell:
        f"{THREADS} {PYTHON} -m experiments.hessian step=accumulate model={{wildcards.model}} "
        f"dataset={{wildcards.dataset}} rows={{wildcards.rows}} shard={{wildcards.shard}} "
        f"n_shards={{wildcards.n_shards}} scale={SCALE} inputs={{params.inputs}} output={{output.shard}} "
        "{params.overrides} > {log} 2>&1"


rule merge_hessian:
    input:
        shards=get_hessian_shards,
    output:
        hessian=f"{RESULTS}/hessians/{{model}}/{{dataset}}/{{rows}}/hessian.npz",
    log:
        f"{RESULTS}/logs/hessians/{{model}}/{{dataset}}/{{rows}}/merge.log",
    benchmark:
        f"{RESULTS}/benchmarks/hessians/{{model}}/{{dataset}}/{{rows}}/merge.tsv",
    params:
        code=get_merge_code(),
        inputs=get_shard_list,
    shell:
        f"{THREADS} {PYTHON} -m experiments.hessian step=merge scale={SCALE} inputs={{params.inputs}} "
        "output={output.hessian} > {log} 2>&1"
