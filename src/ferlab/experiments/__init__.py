"""Reference experiments as suites of configs: run them (resumable) and report ours beside the published numbers.

    >>> from ferlab.experiments import load_suite, run_suite, write_report
    >>> suite = load_suite("maastricht1")  # configs/suites/maastricht1.yaml  # doctest: +SKIP
    >>> run_suite(suite, profile="quick")  # doctest: +SKIP
    >>> write_report(suite, profile="quick")  # reports/maastricht1.md  # doctest: +SKIP
"""

from ferlab.experiments.report import collect_results, write_report
from ferlab.experiments.suite import Experiment, Suite, list_suites, load_suite, run_suite

__all__ = ["Experiment", "Suite", "collect_results", "list_suites", "load_suite", "run_suite", "write_report"]
