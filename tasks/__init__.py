"""lm-eval task YAML for `ladder_*` (use with `lm_eval --include_path tasks`)."""
