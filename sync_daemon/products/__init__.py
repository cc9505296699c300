"""Products: pure planning of the `PC_<SKU>` products the daemon keeps in Syncro."""
