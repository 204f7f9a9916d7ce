"""Search: policy space, one trial, samplers, the Pareto front and the Ray Tune runner."""
