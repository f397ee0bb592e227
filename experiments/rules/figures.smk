# Stage 4, analyses and figures: per experiment, analyse_fig<N> (cheap: from features, models, Hessians and
# trajectories to result tables) and plot_fig<N> (tables to pdf + png). The rules are made from the experiment
# configs (config/experiment/*.yaml): adding an experiment adds its two rules. (A rule's shell command is
# evaluated when its job runs, after the loop: everything per experiment goes through params.)

for _name, _exp in PLAN.experiments.items():

    rule:
        name:
            f"analyse_fig{_exp.figure}"
        input:
            **get_named_inputs(_name),
        output:
            **_exp.outputs,
        log:
            f"{RESULTS}/logs/analyses/{_name}.log",
        benchmark:
            f"{RESULTS}/benchmarks/analyses/{_name}.tsv",
        params:
            experiment=_name,
            config=PLAN.analysis_digest(_name),
            code=PLAN.experiment_code("analyse", _name),
            inputs=hydra_dict(_exp.inputs),
            outputs=hydra_dict(_exp.outputs),
            overrides=get_experiment_overrides,
        shell:
            f"{THREADS} {PYTHON} -m experiments.analyse experiment={{params.experiment}} scale={SCALE} "
            "inputs={params.inputs} "
            "outputs={params.outputs} {params.overrides} > {log} 2>&1"

    rule:
        name:
            f"plot_fig{_exp.figure}"
        input:
            **_exp.outputs,
        output:
            pdf=f"{RESULTS}/figures/{_name}.pdf",
            png=f"{RESULTS}/figures/{_name}.png",
        log:
            f"{RESULTS}/logs/figures/{_name}.log",
        benchmark:
            f"{RESULTS}/benchmarks/figures/{_name}.tsv",
        params:
            experiment=_name,
            config=PLAN.plot_digest(_name),
            code=PLAN.experiment_code("plot", _name),
            inputs=hydra_dict(_exp.outputs),
            overrides=get_experiment_overrides,
        shell:
            f"{THREADS} {PYTHON} -m experiments.plot experiment={{params.experiment}} scale={SCALE} "
            "inputs={params.inputs} "
            "output={output.pdf} {params.overrides} > {log} 2>&1"
