"""Numbered SQL migrations, applied in file-name order by `python -m abtest.migrate`."""
