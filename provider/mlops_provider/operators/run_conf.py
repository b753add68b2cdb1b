"""Refuse a DAG run whose conf holds keys the DAG does not declare as params.

Airflow checks the conf values of declared params against their JSON schema when a run is created
(`airflow dags trigger` and the API answer a wrong type with an error), but it accepts any other key
silently: a typo such as ``{"dya": "2026-01-04"}`` would run the default day. This operator, the first
task of every shipped DAG, fails such a run before anything else happens.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from mlops_provider.exceptions import ConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import Context


def unknown_conf_keys(conf: dict[str, Any], declared: list[str]) -> list[str]:
    """The keys of ``conf`` that are not in ``declared``, each with a close declared name if there is one."""
    problems = []
    for key in sorted(set(conf) - set(declared)):
        close = difflib.get_close_matches(key, declared, n=1)
        problems.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    return problems


class ValidateRunConfOperator(BaseOperator):
    """Fail the run (no retries: the conf will not change) when its conf has a key that is not one of the DAG's params.

    Values need no second check: Airflow validated them against each param's schema when it created
    the run. Put it upstream of the DAG's first tasks, so a refused run does nothing.

    :return: the run's conf, as accepted.
    :raises ConfigurationError: naming each unknown key, a close declared name, and the accepted keys.
    """

    ui_color = "#f0ede4"

    def execute(self, context: Context) -> dict[str, Any]:
        conf = dict(context["dag_run"].conf or {})
        declared = sorted(self.dag.params.keys())
        unknown = unknown_conf_keys(conf, declared)
        if unknown:
            raise ConfigurationError(
                f"DAG {self.dag_id!r} refuses this run's conf: unknown key(s) {', '.join(unknown)}. "
                f"Accepted keys: {', '.join(declared) or '(none)'}; see the DAG's docs for each."
            )
        self.log.info("Run conf accepted: %s", conf or "(empty: every param takes its default)")
        return conf
