"""NumPy reference implementations used to check native results in tests."""
