"""Airflow's local-settings hook for the processes of ``make up`` (on PYTHONPATH only in ``stack_env``).

Airflow imports ``airflow_local_settings`` when it starts. Its worker and triggerer log
servers bind every interface, with no setting to change it; this binds them to
``MODELOPS_BIND_HOST`` instead (see ``local_stack.bind_log_servers``).
"""

from include.modelops.platform.local_stack import bind_log_servers

__all__: list[str] = []  # no cluster policy or setting of Airflow's is overridden here

bind_log_servers()
