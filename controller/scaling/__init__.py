"""ScalingPolicy: the reconcile cycle of replica counts, reactive and predictive, and what it learns."""
