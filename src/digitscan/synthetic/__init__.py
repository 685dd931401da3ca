"""Generated inputs: pen-stroke digits and numbers, photographs of glyphs under real-world nuisances, non-digits."""
