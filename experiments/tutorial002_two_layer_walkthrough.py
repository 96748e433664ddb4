"""Tutorial 002: the two-layer ReLU/sigmoid walkthrough with every intermediate gradient.

Run: python experiments/tutorial002_two_layer_walkthrough.py
"""

from jaxbp.tutorial import demo

if __name__ == "__main__":
    demo.print_two_layer()
