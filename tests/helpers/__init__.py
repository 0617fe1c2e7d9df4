"""Builders the test modules share (config namespaces, small learners and batches, run launchers, record
writers); test modules import from here, never from each other."""
