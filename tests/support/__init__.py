"""Helpers shared by the test suites (real tools driven the way the tests need them)."""
