"""SFT training: loss, optimizer, jitted step, orbax checkpoints, the loop."""
