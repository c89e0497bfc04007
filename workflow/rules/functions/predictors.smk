# Input functions of predictors.smk (the transferability predictors).


def predictor_files(ext):
    """Every predictor's matrix (csv, parquet) or cost (json): the shared ones, then per method the prompt ones."""
    return ([layout.PREDICTOR.template(PREDICTORS_DIR, p, ext) for p in SHARED_PREDICTORS]
            + [layout.PROMPT_PREDICTOR.template(PREDICTORS_DIR, m, p, ext) for m in METHODS for p in PROMPT_PREDICTORS])
