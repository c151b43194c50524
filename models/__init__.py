"""Networks of the generate and perception stages: causal DiT, Wan VAE, TAEHV, umT5, Florence-2."""
