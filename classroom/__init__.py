"""The classroom tooling: what learners and instructors type, above the pipeline.

The workbook has three tiers, and imports point one way, down:

- ``classroom`` (this package): the command line behind ``make`` (``cli``), ``make run``'s
  runner and summary (``runner``), checkpoints, the doctor, the exercises and their
  self-checks, the orchestration tour of notebook 06, and the refresh of the committed
  notebook outputs (``reference_outputs``);
- ``dagster_orchestration``: the Dagster code location (assets, checks, partitions, the job,
  the schedule and the sensor), which runs the stage notebooks;
- ``hdb_elt``: the stage library (settings, the warehouse and the five stages), which the
  notebooks and the assets both call.

``hdb_elt`` imports neither of the others, and ``dagster_orchestration`` does not import this
package; ``tests/test_architecture.py`` keeps it so.
"""
