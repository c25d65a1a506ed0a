"""Built-in degradations plugins."""
