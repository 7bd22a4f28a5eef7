"""Quality of the generator: self-reenactment metrics against baselines, identity kept, D's realism score."""
