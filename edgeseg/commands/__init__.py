"""One module per CLI command; `edgeseg.cli` registers them."""
