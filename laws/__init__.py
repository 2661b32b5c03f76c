"""Task scaling laws, numpy/scipy only: observation table, step 1, step 2, chained, variants."""
