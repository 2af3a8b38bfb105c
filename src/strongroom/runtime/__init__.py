"""Process runtime: supervisor, child processes, run-dir contracts.

Public API (import from the modules; this package stays import-free so every
child process starts without loading the supervisor):

- ``runtime.supervisor``: ``Supervisor``, ``ProcessInfo``, ``edge_url``, ``ca_cert_path``
- ``runtime.process``: ``ProcessSpec``, ``build_specs``, ``Backoff``, ``START_ORDER``,
  ``STOP_ORDER``
- ``runtime.state``: ``RunState``, ``ProcessState``, ``UpstreamList``, ``read_state``,
  ``write_upstreams``, ``write_json_atomic``, ``pid_alive``
- ``runtime.lock``: ``PidLock``, ``is_locked``, ``SupervisorAlreadyRunningError``
- ``runtime.child``: ``python -m strongroom.runtime.child <role> --index I --zone Z``
- ``runtime.worker``: ``run(settings, index)``, ``Job``, ``periodic_job``, ``JOB_FACTORIES``
- ``runtime.bootstrap``: ``prepare(settings)`` (data dir, PKI, migrations)
"""
