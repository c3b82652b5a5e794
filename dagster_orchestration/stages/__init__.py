"""One module per stage notebook: its asset, its checks, the metadata of its materializations."""
