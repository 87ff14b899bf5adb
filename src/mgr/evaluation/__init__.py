"""Evaluation: metrics (a leaf), calibration, scoring (the evaluate protocol), report (leaderboard, figures) and compare."""
