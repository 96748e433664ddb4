"""jaxbp: backpropagation by hand in JAX."""
