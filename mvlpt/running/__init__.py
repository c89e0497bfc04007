"""Running a study: the preflight check, the cost model, the devices a job runs on."""
