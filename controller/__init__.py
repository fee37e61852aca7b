"""infercast controller: the only package that does I/O or knows Kopf."""
