"""TUSZ data: synthetic corpus, EDF ingestion, preprocessing, the window cache, DataModule."""
