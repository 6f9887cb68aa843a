"""intentd trainer: synthetic speech data and model fine-tuning."""
