"""From result files to tables, statistics and figures: gains with their uncertainty, task
similarity, correlations, reference rows, the designed world's score."""
