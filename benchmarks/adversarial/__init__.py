"""Generator against detector: fine-tuning G to fool a detector, and rounds of the two improving in turn."""

from benchmarks.adversarial.against_detector import AdversarialConfig, adversarial_finetune
from benchmarks.adversarial.rounds import RoundConfig, run_rounds

__all__ = ["AdversarialConfig", "RoundConfig", "adversarial_finetune", "run_rounds"]
