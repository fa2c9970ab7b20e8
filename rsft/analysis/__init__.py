"""Analyses over one or more run directories: dynamics, dip-and-recovery, response length, reasoning markers."""
