"""Seed 001 exercise 5.3: a 3-layer network verified by gradient checking.

Run: python experiments/seed001_three_layer_gradcheck.py
"""

from jaxbp import demo

if __name__ == "__main__":
    demo.print_three_layer()
