"""Sensors of the mlops provider; one module per integration."""
