"""The study model: its vocabulary (methods, measures, predictors), its typed config, the file
layout of a study, the result records and the rules for names."""
