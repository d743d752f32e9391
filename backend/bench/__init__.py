"""Benchmarks behind `cvstack bench`: side-by-side measurements reported as ratios."""
