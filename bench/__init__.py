"""agtap benchmarks: `sudo make bench` (python -m bench.run). See docs/PERFORMANCE.md."""
