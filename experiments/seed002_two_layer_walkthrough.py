"""Seed 002: the two-layer ReLU/sigmoid walkthrough with every intermediate gradient.

Run: python experiments/seed002_two_layer_walkthrough.py
"""

from jaxbp import demo

if __name__ == "__main__":
    demo.print_two_layer()
