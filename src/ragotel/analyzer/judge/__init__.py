"""Judging: rules over the signals, the alert state machine, and the diagnosis of an alert."""
