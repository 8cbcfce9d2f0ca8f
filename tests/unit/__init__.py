"""Unit tests: pure logic, no database and no I/O beyond temporary files."""
