"""Tutorial 003: the XOR-like task, 2-8-1 network, BCE, lr 0.5, 1000 epochs, manual gradients only.

Run: python experiments/tutorial003_xor.py
"""

from jaxbp.tutorial import demo

if __name__ == "__main__":
    demo.print_xor(1000)
