"""``poller bench``: the performance bars, measured beside a plain baseline in one run.

Starts its own nats-server and vendor simulators, runs the real :class:`poller.runtime.service.Service`
against them, and prints one table (ours, baseline, ours ÷ baseline, target) plus a JSON file.
Rate-limit use and throttling come from the simulator's own request log, detection latency from
a NATS subscriber timing each event against the moment the change was made in the simulator.
``--quick`` runs the same parts at small sizes in seconds (what the tests run), all but ``cluster``,
which waits for leader elections and lease expiry. One module per section: ``scenarios`` (what is
simulated), ``latency`` and ``tracker`` (the probes), ``cpu``, ``publish``, ``memory``, ``push``,
``cluster`` and ``cluster_replicas`` (a three-server cluster, R3, poller processes sharing
accounts), ``report`` (figures and table), ``baseline`` (the plain poller), ``cli``.
The analysis of the figures, including how the latency floor is derived, is in docs/performance.md.
"""

from poller.tools.bench.cli import PARTS, QUICK_PARTS, build_parser, main, run_bench, run_cli
from poller.tools.bench.results import Figure, Outcome, Results
from poller.tools.bench.scenarios import OUTBOUNDBOT_MODULES, SCENARIOS
from poller.tools.bench.sizes import FULL, QUICK, Sizes

__all__ = [
    "FULL",
    "OUTBOUNDBOT_MODULES",
    "PARTS",
    "QUICK",
    "QUICK_PARTS",
    "SCENARIOS",
    "Figure",
    "Outcome",
    "Results",
    "Sizes",
    "build_parser",
    "main",
    "run_bench",
    "run_cli",
]
