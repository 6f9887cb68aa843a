"""Command segmentation: where one spoken command ends and the next begins, with the
model's help (:mod:`.splitter`), on top of the VAD's silence-based utterances."""
