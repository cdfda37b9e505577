"""Compare a candidate model with the champion and a naive baseline, and decide the gate.

Everything here works on *scores*, not models (see ``include.modelops.scoring`` for the
contract), so it is cheap to test and the same numbers come out wherever it runs.

* ``metrics`` – the task's metrics (``compute_metrics``), the naive baseline, the paired
  bootstrap, the chance level, slice metrics and the latency profile;
* ``report`` – the evaluation report (``evaluate``, a JSON-serialisable dict) and its
  self-contained HTML page (``render_html``);
* ``gate`` – the promotion gate from ``spec.evaluation.gate`` (``decide``): every check with a
  one-line reason a reviewer can act on;
* ``threshold`` – the decision threshold a binary classifier is served with.

Only numpy and the standard library are imported at module level: DAG files may import
these modules (indirectly) at parse time.
"""
