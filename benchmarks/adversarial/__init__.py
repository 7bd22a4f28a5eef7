"""Generator against detector: fine-tuning G to fool a detector, and rounds of the two improving in turn."""
