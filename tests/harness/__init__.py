"""The test harness: a test-controlled exporter, polling, API client helpers, a tiny Kopf operator."""
