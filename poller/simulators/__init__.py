"""Local simulators of the vendors' APIs: the tests', the demo's and the benchmark's counterpart."""
