"""Maintcast broadcaster package."""
