"""Descriptors for linear models."""
