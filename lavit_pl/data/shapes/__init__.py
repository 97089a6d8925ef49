"""The Shapes world: a small synthetic stand-in for LaVIT's data and benchmarks (DESIGN.md section 6)."""
