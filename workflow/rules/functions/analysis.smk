# Input functions and params of analysis.smk (tables, task similarity, correlations, figures).


def results_dir_of(wildcards, output):
    """The results directory of a tables output ``{results}/tables/runs.csv``."""
    return os.path.dirname(os.path.dirname(output.runs))


def tables_dir_of(wildcards, output):
    return os.path.dirname(output.runs)


def reference_dir_of(wildcards, output):
    """The reference folder next to the results of a tables output (rule collect_results)."""
    return os.path.join(results_dir_of(wildcards, output), layout.REFERENCE_DIR.relative())


def _study_selection():
    return f"--methods {q(METHODS)} --tasks {q(TASKS)} --seeds {q(SEEDS)}"


def _embed_split_seeds():
    seeds = SIMILARITY["fewshot_seeds"]
    return [int(s) for s in (SEEDS if seeds is None else seeds)]


def _embed_shots():
    return SHOTS if SIMILARITY["shots"] is None else int(SIMILARITY["shots"])


def _use_split_files():
    """Use the study's pinned split files (data.smk) when they are the ones asked for."""
    return _embed_shots() == SHOTS and set(_embed_split_seeds()) <= set(SEEDS)


def embed_image_inputs(wildcards):
    if not _use_split_files():
        return []
    return [ancient(split_file(wildcards.task, s)) for s in _embed_split_seeds()]


def embed_image_args(wildcards):
    seeds = _embed_split_seeds()
    if _use_split_files():
        seeds_arg = f"--split-files {q(split_file(wildcards.task, s) for s in seeds)}"
    else:
        seeds_arg = f"--fewshot-seeds {q(seeds)}"
    args = [
        "--shots", _embed_shots(),
        "--sample-size", SIMILARITY["sample_size"],
        "--sample-seed", SIMILARITY["sample_seed"],
        "--batch-size", SIMILARITY["batch_size"],
    ]
    return f"{model_args(SIMILARITY['device'])} {q(args)} {seeds_arg}"


def embed_label_args(wildcards):
    return f"{model_args(SIMILARITY['device'])} --templates {q([SIMILARITY['templates']])}"


def measure_embeddings(wildcards):
    """The input of the `similarity` job of one measure: the embeddings it is computed from."""
    return embeddings(vocabulary.MEASURES[wildcards.measure].kind)


def measure_args(wildcards):
    """--tasks, then the measure's own options (study.MEASURES[...].options) from the config's `similarity` section."""
    options = vocabulary.MEASURES[wildcards.measure].options
    return q(["--tasks", *TASKS, *(a for name in options for a in (f"--{name.replace('_', '-')}", SIMILARITY[name]))])


def similarity_tables(wildcards=None):
    return [layout.SIMILARITY.template(SIMILARITY_DIR, m, "parquet") for m in MEASURES]


def resampling_args():
    """The statistics options of every command that draws confidence intervals or p-values (`mvlpt
    correlate`, `mvlpt figures`): the same options, so both draw the same intervals."""
    args = ["--n-boot", ANALYSIS["n_boot"], "--n-perm", ANALYSIS["n_perm"], "--seed", ANALYSIS["seed"],
            "--level", ANALYSIS["level"]]
    return f"{q(args)} --model-measures {q(ANALYSIS['model_measures'] or ['none'])}"


def correlate_args(wildcards=None):
    return f"{resampling_args()} --methods {q(METHODS)}"


def cluster_flag(wildcards=None):
    return "--cluster" if ANALYSIS["cluster"] else ""


def report_table(name, caption, category, **kw):
    return report(table(name), caption=f"../report/{caption}.rst", category=category, **kw)
