"""See model_discovery/__init__.py."""
