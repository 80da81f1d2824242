"""Training loops, data loading, checkpoints and their command line.

Imports `djpeg` and `models`. (The first loops arrive with the learned-tables work.)
"""
