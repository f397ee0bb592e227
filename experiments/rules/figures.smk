# Stage 4, figures: one script per figure, reading its result table (and the training stage's manifest,
# for what a figure draws beyond the table, e.g. Fig 5's structures), writing pdf + png.


rule plot_figure:
    input:
        f"{RESULTS}/tables/{{experiment}}.csv",
        f"{RESULTS}/models/{{experiment}}/manifest.json",
    output:
        pdf=f"{RESULTS}/figures/{{experiment}}.pdf",
        png=f"{RESULTS}/figures/{{experiment}}.png",
    log:
        f"{RESULTS}/logs/figures/{{experiment}}.log",
    conda:
        "../../environment.yml"
    params:
        python=PYTHON,
        scale=SCALE,
        inputs=get_hydra_inputs,
    shell:
        "{params.python} -m experiments.figures experiment={wildcards.experiment} scale={params.scale} "
        "inputs={params.inputs} output={output.pdf} > {log} 2>&1"
