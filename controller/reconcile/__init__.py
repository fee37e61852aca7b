"""What every policy kind's reconcile cycle shares: snapshot, dependencies, spec parts, conditions, reporting."""
