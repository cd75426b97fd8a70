"""AI replies: providers, prompt building, the generation job, cancellation and the reconciler."""
