"""The operator's side of Vestry: the `vestry` command, the embedded stack and the demo."""
