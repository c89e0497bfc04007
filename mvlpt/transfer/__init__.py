"""Transfer beyond the pairwise matrix: transferability predictors and their estimators, the
multitask study's grouping strategies and tables."""
