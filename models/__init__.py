"""Flax (NNX) models that learn JPEG parameters: table-predicting and saliency CNNs.

They import `djpeg`, never `train`. (The first models arrive with the learned-tables work.)
"""
