"""The load harness behind ``wingmanctl bench``: simulated users, measurements, budgets."""
