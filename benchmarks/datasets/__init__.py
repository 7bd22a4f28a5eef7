"""Benchmark datasets: real/fake clips planned and built, the card, perturbations, exports and imports."""
