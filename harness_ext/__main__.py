"""`python -m taskladder.harness_ext <lm_eval arguments>`: lm-eval's CLI with `ladder-hf`
registered, e.g. `python -m taskladder.harness_ext --model ladder-hf
--model_args pretrained=DIR --include_path tasks --tasks 'ladder_*'`."""

from lm_eval.__main__ import cli_evaluate

import taskladder.harness_ext.backend  # noqa: F401  (registers ladder-hf)

if __name__ == "__main__":
    cli_evaluate()
