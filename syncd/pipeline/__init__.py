"""The stages of one run, in order: extract → map → compare → load → record."""
