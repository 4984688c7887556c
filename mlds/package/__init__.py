"""``mlds package``: the packager's tools. ``freeze`` builds the frozen trainer volunteers run,
``contents`` reads what a bundle holds (its Python modules, its size)."""
