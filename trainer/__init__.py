"""intentd trainer: synthetic speech from an intent spec (``synthesis``), fitting a classifier
(``fitting``), tuning the encoder and averaging models (``tuning``), and evaluation."""
