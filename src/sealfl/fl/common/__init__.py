"""Pieces the federated workloads share, so that homo-lr and hfl do the same thing one way.

- :mod:`.metrics`: the JSON-lines metrics log every party writes, and its reader;
- :mod:`.demo_processes`: a demo's parties as processes on this machine (spawning, output,
  progress from the PS's metrics, stopping);
- :mod:`.demo_files`: what a demo or ``prepare`` writes as the operator of every party
  (simulated platform, policies, release list, role configs);
- :mod:`.demo_release`: the demo's last check, that an outsider's key cannot open the model.

Nothing here imports torch or a workload: each workload imports these, never the other way.
"""
