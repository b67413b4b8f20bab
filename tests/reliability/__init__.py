"""The reliability suite (issue 8): bad input, faults, crashes, load and security.

The pytest files here are the short form (marker ``reliability``, each file about a minute);
``bench/reliability.py`` runs the same scenarios longer and prints the table of figures.
"""
