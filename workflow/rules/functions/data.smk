# Input functions and params of data.smk (the few-shot splits and the frozen image features).


def split_policy_args():
    """`mvlpt split`'s --policy, only when it is not the default (the commands of existing studies stay as they were)."""
    policy = config.get("fewshot_policy", "available")
    return "" if policy == "available" else f"--policy {shlex.quote(policy)}"


def features_split_args(wildcards):
    return " ".join(f"--split-file {shlex.quote(split_file(wildcards.task, s))}" for s in SEEDS)


def cache_dir_of(wildcards, output):
    """The cache directory of a features marker (mvlpt.study.layout.FEATURES_DONE)."""
    return os.path.dirname(os.path.dirname(output[0]))
