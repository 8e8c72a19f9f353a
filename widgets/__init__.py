"""The widgets' ES modules and CSS, installed as the ``coax_nb.static`` package (see
pyproject.toml); ``coax_nb.widgets`` reads them from there."""
