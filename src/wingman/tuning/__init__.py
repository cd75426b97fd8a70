"""Tuning Wingman, PostgreSQL, Redis and PgBouncer to the host (``wingmanctl tune``).

- :mod:`~wingman.tuning.plan`: host facts and role in, the plan (every value with its reason)
  out; pure.
- :mod:`~wingman.tuning.pgbouncer`: PgBouncer's numbers for a plan; pure.
- :mod:`~wingman.tuning.render`: the config files from the plan's data.
- :mod:`~wingman.tuning.rows`: the plan as rows and as the Markdown table of docs/tuning.md.

Where each file lives on the appliance or in a dev stack, and what reloads it, is in
``wingman.ops.tune_appliance`` and ``wingman.ops.tune_dev``.
"""

from wingman.tuning.plan import HostFacts, Tuned, TuningPlan, plan_for

__all__ = ["HostFacts", "Tuned", "TuningPlan", "plan_for"]
