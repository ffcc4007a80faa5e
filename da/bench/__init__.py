"""Benchmark reports: results.csv, results.md beside published figures, accuracy and t-SNE plots."""
