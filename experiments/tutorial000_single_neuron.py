"""Tutorial 000: one sigmoid neuron (x=0.5, y=1, w=0.2, b=0.1, lr=0.01) and the y = wx + b graph example.

Run: python experiments/tutorial000_single_neuron.py
"""

from jaxbp.tutorial import demo

if __name__ == "__main__":
    demo.print_single_neuron()
    print()
    demo.print_graph_example()
