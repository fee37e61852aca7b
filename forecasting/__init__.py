"""infercast forecasting: pure ML on series (forecasters, model selection, failure-pattern detectors)."""
