"""Reading whole numbers: the line layout both readers share, the line reader, cutting into digits, the debug image."""
