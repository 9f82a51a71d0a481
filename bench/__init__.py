"""``make bench``: each stage measured with real services, against ceilings from the same run."""
