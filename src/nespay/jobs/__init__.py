"""Named scheduled jobs and the runner that shares them between jobs replicas."""
