"""A deterministic, seeded generator of example data: daily customer-activity snapshots and churn labels.

See :mod:`mlops_provider.example_data.generator` and docs/data.md for the schema.
"""
