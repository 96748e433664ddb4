"""The tutorial documents' worked examples (single neuron, computational graph, two-layer
walkthrough, XOR, three-layer gradient check), reproduced with jaxbp's hand-written backward
rules: :mod:`jaxbp.tutorial.worked_examples` computes them, :mod:`jaxbp.tutorial.demo`
prints them (``jaxbp demo``)."""
