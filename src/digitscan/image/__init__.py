"""Images in: decode (the security boundary) -> ink (where the ink is) -> prepare (the 28x28 MNIST-style input)."""
