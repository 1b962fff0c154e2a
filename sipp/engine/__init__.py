"""Local inference: the engine thread per loaded model, sampler chains, text handling."""
