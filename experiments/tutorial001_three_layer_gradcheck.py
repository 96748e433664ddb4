"""Tutorial 001 exercise 5.3: a 3-layer network verified by gradient checking.

Run: python experiments/tutorial001_three_layer_gradcheck.py
"""

from jaxbp.tutorial import demo

if __name__ == "__main__":
    demo.print_three_layer()
