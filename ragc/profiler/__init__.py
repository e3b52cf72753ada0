"""Everything that measures: `ragc profile`, micro-benchmarks, in-model timings, recorded runs, cost-model eval."""
