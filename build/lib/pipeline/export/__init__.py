"""Dataset versions in the layouts other trainers read (`embsynth export`)."""
