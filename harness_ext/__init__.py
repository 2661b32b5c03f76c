"""The Python behind the `ladder_*` lm-eval tasks: OLMES data, metrics, fast scoring backend."""
