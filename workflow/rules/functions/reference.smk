# Names and input functions of reference.smk (the reference rows).


REFERENCE_DIR = layout.REFERENCE_DIR.template(RESULTS)


def reference_feature_inputs(wildcards):
    """The task's frozen-feature marker when the study computes the cache anyway (a method reads it)."""
    if any(caches_image_features(m) for m in METHODS):
        return [ancient(features_marker(wildcards.task))]
    return []


def reference_probe_inputs(wildcards):
    return [ancient(split_file(wildcards.task, wildcards.seed)), *reference_feature_inputs(wildcards)]
