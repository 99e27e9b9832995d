"""What is measured rather than guessed: tissue, noise, motion, JPEG quantisation, exposure evidence, a tile's tone against its slide, and the judgement that combines them with the network."""
