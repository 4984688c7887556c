"""The work generator: dataset declarations, workunit specs and names, create_work input."""
